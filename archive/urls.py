from django.urls import path

from archive import views

app_name = "archive"

urlpatterns = [
    path("", views.table, name="table"),
    path("upload/", views.upload, name="upload"),
    path("links/", views.copy_links, name="links"),
    path("doc/<int:number>/", views.document_detail, name="document"),
    path("doc/<int:number>/fields/", views.document_fields, name="document_fields"),
    path("doc/<int:number>/notes/", views.document_notes, name="document_notes"),
    path("doc/<int:number>/file/<int:file_id>/", views.document_file, name="file"),
    path("doc/<int:number>/mail/body/", views.mail_body, name="mail_body"),
    path("doc/<int:number>/mail/part/<str:part>/", views.mail_part, name="mail_part"),
]
