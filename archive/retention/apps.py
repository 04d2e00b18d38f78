from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "archive.retention"
    label = "retention"
    verbose_name = "Retention and legal hold"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import lock

        lock.connect()
