from django.urls import path

from mailsources import imports_views, views

app_name = "mailsources"

urlpatterns = [
    path("", views.source_list, name="list"),
    path("new/<str:kind>/", views.source_create, name="create"),
    path("import/", imports_views.import_page, name="import"),
    path("import/upload/", imports_views.import_upload, name="import-upload"),
    path("<int:pk>/", views.source_detail, name="detail"),
    path("<int:pk>/edit/", views.source_edit, name="edit"),
    path("<int:pk>/test/", views.source_test, name="test"),
    path("<int:pk>/sync/", views.source_sync_now, name="sync"),
    path("<int:pk>/progress/", views.source_progress, name="progress"),
]
