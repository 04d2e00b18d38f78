"""The procedure documentation (Verfahrensdokumentation, technical part): a
dated page describing the system as configured — mail sources and their
schedules, the scheduled jobs, retention policies and legal holds (when
``archive.retention`` is installed), integrity anchoring and the latest
verification, storage, field definitions, roles and the users of each group,
the software version. Each generation is kept as a file with its SHA-256 and
a row, and logged. The page prints to PDF from the browser (print stylesheet)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import models, transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext

from archive.integrity import audit
from archive.integrity.models import Anchor, ChainHead
from archive.models import ArchiveSettings, FieldDefinition

from .builder import export_dir
from .models import ProcedureDocument
from .version import software_version

SETTINGS_SHOWN = (
    "STORAGE_DIR", "EXPORT_DIR", "EXPORT_RETENTION_DAYS", "TIME_ZONE", "MAIL_MAX_MESSAGE_BYTES",
    "TSA_URL", "ANCHOR_INTERVAL", "VERIFY_FULL_INTERVAL_DAYS", "VERIFY_SAMPLE_SIZE",
)  # fmt: skip


PROCEDURE_ACTION = "procedure_documentation"  # an audit action of its own: a generation


def procedure_file(document: ProcedureDocument) -> Path:
    return export_dir() / document.path


def _rows(model: type[models.Model]) -> list[dict[str, Any]]:
    """Every row of a model as {field label: value} (the retention engineer's models, rendered generically)."""
    fields = [f for f in model._meta.concrete_fields if not f.name.endswith("_encrypted")]
    return [
        {str(f.verbose_name): getattr(row, f.attname) for f in fields} for row in model._default_manager.all()[:500]
    ]


def _sources() -> list[Any]:
    if not apps.is_installed("mailsources"):
        return []
    return list(apps.get_model("mailsources", "MailSource")._default_manager.order_by("name"))


def _retention() -> list[dict[str, Any]]:
    if not apps.is_installed("archive.retention"):
        return []
    config = apps.get_app_config("retention")
    return [{"name": str(m._meta.verbose_name_plural), "rows": _rows(m)} for m in config.get_models()]


def _latest_verification() -> Any:
    """The newest recorded verification (the integrity app's model, once it exists)."""
    for name in ("Verification", "VerificationRun"):
        try:
            model = apps.get_model("integrity", name)
        except LookupError:
            continue
        return model._default_manager.order_by("-pk").first()
    return None


def procedure_context() -> dict[str, Any]:
    now = timezone.now()
    return {
        "generated": now,
        "software_version": software_version(),
        "sources": _sources(),
        "schedule": sorted(
            (name, entry["task"], entry["schedule"]) for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        ),
        "routes": sorted((pattern, route.get("queue", "")) for pattern, route in settings.CELERY_TASK_ROUTES.items()),
        "retention": _retention(),
        "retention_installed": apps.is_installed("archive.retention"),
        "heads": list(ChainHead.objects.order_by("chain")),
        "latest_anchor": Anchor.objects.order_by("-created").first(),
        "anchors": Anchor.objects.count(),
        "verification": _latest_verification(),
        "settings": [(name, getattr(settings, name, gettext("— (not configured)"))) for name in SETTINGS_SHOWN],
        "archive_settings": ArchiveSettings.load(),
        "fields": list(FieldDefinition.objects.all()),
        "groups": [(g, list(g.user_set.order_by("username"))) for g in Group.objects.order_by("name")],
        "staff": list(User.objects.filter(is_staff=True).order_by("username")),
        "superusers": list(User.objects.filter(is_superuser=True).order_by("username")),
    }


def page_csp(content: bytes) -> str:
    """No script, no request; the page's one ``<style>`` block by its hash."""
    start, end = content.find(b"<style>"), content.find(b"</style>")
    style = content[start + len(b"<style>") : end] if 0 <= start < end else b""
    digest = base64.b64encode(hashlib.sha256(style).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )


def procedure_render() -> str:
    return render_to_string("exports/procedure_document.html", procedure_context())


@transaction.atomic
def procedure_generate(request: HttpRequest | None = None, *, user: Any = None) -> ProcedureDocument:
    """Render, store (a file under EXPORT_DIR/procedure, never overwritten) and log one generation."""
    user = user or (request.user if request is not None else None)
    content = procedure_render().encode()
    now = timezone.now()
    relative = f"procedure/procedure-{now:%Y%m%d-%H%M%S-%f}.html"
    target = export_dir() / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as fh:
        fh.write(content)
    document = ProcedureDocument.objects.create(
        created_by=user if user is not None and user.is_authenticated else None,
        path=relative,
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        software_version=software_version(),
    )
    audit.log(
        PROCEDURE_ACTION,
        request,
        user=user,
        details={"procedure_documentation": document.pk, "sha256": document.sha256, "path": relative},
    )
    return document
