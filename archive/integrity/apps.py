from django.apps import AppConfig


class IntegrityConfig(AppConfig):
    name = "archive.integrity"
    label = "integrity"
    verbose_name = "Integrity and audit"
    default_auto_field = "django.db.models.BigAutoField"
