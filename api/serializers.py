"""What the API answers: plain read-only shapes of the archive's objects."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from archive.models import Document, DocumentFile, FieldDefinition, FileRole
from archive.selectors import field_value
from mailsources.models import MailSource, SyncRun


class FileSerializer(serializers.ModelSerializer[DocumentFile]):
    download = serializers.SerializerMethodField()

    class Meta:
        model = DocumentFile
        fields = ["id", "role", "name", "content_type", "size", "sha256", "version", "part", "created", "download"]

    def get_download(self, file: DocumentFile) -> str:
        return reverse("api:file", args=[file.document_id, file.pk])


class DocumentSummarySerializer(serializers.ModelSerializer[Document]):
    number = serializers.IntegerField(source="pk")
    owner_group = serializers.CharField(source="owner_group.name")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["number", "kind", "title", "date", "owner_group", "created", "modified", "url"]

    def get_url(self, document: Document) -> str:
        return reverse("api:document", args=[document.pk])


def _json_value(value: object) -> object:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class DocumentDetailSerializer(DocumentSummarySerializer):
    versions = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta(DocumentSummarySerializer.Meta):
        fields = [*DocumentSummarySerializer.Meta.fields, "notes", "versions", "files"]

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # "fields" cannot be a class attribute of a serializer (it is its field map).
        declared = super().get_fields()
        return {**declared, "fields": serializers.SerializerMethodField(method_name="get_field_values")}

    @extend_schema_field({"type": "object", "additionalProperties": {}})
    def get_field_values(self, document: Document) -> dict[str, object]:
        definitions: list[FieldDefinition] = self.context["definitions"]
        return {f.name: _json_value(field_value(document, f)) for f in definitions}

    @extend_schema_field(FileSerializer(many=True))
    def get_versions(self, document: Document) -> list[dict[str, Any]]:
        files = [f for f in self.context["files"] if f.role == FileRole.ORIGINAL]
        return list(FileSerializer(files, many=True).data)

    @extend_schema_field(FileSerializer(many=True))
    def get_files(self, document: Document) -> list[dict[str, Any]]:
        return list(FileSerializer(self.context["files"], many=True).data)


class DocumentPageSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="Documents counted, at most up to the counting limit.")
    more = serializers.BooleanField(help_text="True when counting stopped at the limit: there are more.")
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    by_relevance = serializers.BooleanField()
    results = DocumentSummarySerializer(many=True)


class UploadSerializer(serializers.Serializer[Any]):
    """The upload form's fields (archive/forms.py UploadForm validates them)."""

    files = serializers.ListField(child=serializers.FileField())
    owner_group = serializers.IntegerField(help_text="Id of one of the user's groups.")
    version_key = serializers.CharField(required=False, help_text="With versioning: the version key.")


class UploadResultSerializer(serializers.Serializer[Any]):
    documents = DocumentSummarySerializer(many=True)
    new_versions = serializers.IntegerField()


class AccessLinkSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    title = serializers.CharField()
    url = serializers.CharField()


class AccessLinksSerializer(serializers.Serializer[Any]):
    links = AccessLinkSerializer(many=True)
    text = serializers.CharField()
    html = serializers.CharField()
    configured = serializers.BooleanField()


class SyncRunSerializer(serializers.ModelSerializer[SyncRun]):
    class Meta:
        model = SyncRun
        fields = ["id", "started", "finished", "status", "new", "duplicate", "skipped", "failed", "done", "total"]


class MailSourceSerializer(serializers.ModelSerializer[MailSource]):
    owner_group = serializers.CharField(source="owner_group.name")
    mailboxes = serializers.ListField(source="sync_mailboxes", child=serializers.CharField())

    class Meta:
        model = MailSource
        fields = [
            "id",
            "kind",
            "name",
            "enabled",
            "interval_minutes",
            "owner_group",
            "mailboxes",
            "status",
            "status_message",
            "next_run_at",
            "last_run_at",
            "queued_at",
            "archived_count",
        ]


class DetailSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()
