from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class IntegrityConfig(AppConfig):
    name = "archive.integrity"
    label = "integrity"
    verbose_name = _("Integrity and audit")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import audit_admin, signals  # noqa: F401 - audit_admin registers the read-only admin

        signals.connect()
        # After auth's own post_migrate handler has created this app's permissions.
        post_migrate.connect(signals.ensure_auditors_group, sender=self, dispatch_uid="audit.auditors_group")
