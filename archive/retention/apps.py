from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RetentionConfig(AppConfig):
    name = "archive.retention"
    label = "retention"
    verbose_name = _("Retention and legal hold")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import lock

        lock.connect()
