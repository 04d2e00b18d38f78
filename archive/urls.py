from django.urls import path, register_converter

from archive import views
from archive.selectors import MAX_DOCUMENT_NUMBER


class NumberConverter:
    """A document or file number: ASCII digits that fit a 64-bit key. A longer
    one cannot exist, and SQLite could not even compare it (a 404, not a 500)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_DOCUMENT_NUMBER:
            raise ValueError("no such number")  # the URL does not match: 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(NumberConverter, "number")

app_name = "archive"

urlpatterns = [
    path("", views.table, name="table"),
    path("upload/", views.upload, name="upload"),
    path("links/", views.copy_links, name="links"),
    path("overview/", views.overview, name="overview"),
    path("doc/<number:number>/", views.document_detail, name="document"),
    path("doc/<number:number>/fields/", views.document_fields, name="document_fields"),
    path("doc/<number:number>/notes/", views.document_notes, name="document_notes"),
    path("doc/<number:number>/file/<number:file_id>/", views.document_file, name="file"),
    path("doc/<number:number>/mail/body/", views.mail_body, name="mail_body"),
    path("doc/<number:number>/mail/part/<str:part>/", views.mail_part, name="mail_part"),
]
