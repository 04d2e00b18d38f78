from django.apps import AppConfig


class MailsourcesConfig(AppConfig):
    name = "mailsources"
    verbose_name = "Mail sources"
