from django.urls import path

from . import views

app_name = "exports"

urlpatterns = [
    path("", views.export_list, name="list"),
    path("<int:pk>/", views.export_detail, name="detail"),
    path("<int:pk>/progress/", views.export_progress, name="progress"),
    path("<int:pk>/download/", views.export_download, name="download"),
    path("procedure/", views.procedure_list, name="procedure"),
    path("procedure/generate/", views.procedure_generate, name="procedure_generate"),
    path("procedure/<int:pk>/", views.procedure_view, name="procedure_view"),
]
