from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ExportsConfig(AppConfig):
    name = "archive.exports"
    label = "exports"
    verbose_name = _("Exports and procedure documentation")
    default_auto_field = "django.db.models.BigAutoField"
