from django.urls import path

from api import views

app_name = "api"

# Numbers are matched as text and checked in the views: a number no document
# can have is a 404 there, with the body every other unseen document gets.
urlpatterns = [
    path("v1/documents/", views.DocumentListView.as_view(), name="documents"),
    path("v1/documents/<str:number>/", views.DocumentDetailView.as_view(), name="document"),
    path("v1/documents/<str:number>/files/<str:file_id>/", views.FileDownloadView.as_view(), name="file"),
    path("v1/links/", views.AccessLinksView.as_view(), name="links"),
    path("v1/sources/", views.MailSourceListView.as_view(), name="sources"),
    path("v1/sources/<str:pk>/", views.MailSourceDetailView.as_view(), name="source"),
    path("v1/sources/<str:pk>/runs/", views.MailSourceRunsView.as_view(), name="source_runs"),
    path("v1/sources/<str:pk>/sync/", views.MailSourceSyncView.as_view(), name="source_sync"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
    path("docs/", views.DocsView.as_view(), name="docs"),
]
