from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MailsourcesConfig(AppConfig):
    name = "mailsources"
    verbose_name = _("Mail sources")
