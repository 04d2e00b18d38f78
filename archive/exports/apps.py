from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "archive.exports"
    label = "exports"
    verbose_name = "Exports and procedure documentation"
    default_auto_field = "django.db.models.BigAutoField"
