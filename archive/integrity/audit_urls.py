from django.urls import path

from . import audit_views

app_name = "audit"

urlpatterns = [
    path("", audit_views.audit_log, name="log"),
    path("export.csv", audit_views.audit_export_csv, name="export_csv"),
    path("export.json", audit_views.audit_export_json, name="export_json"),
]
