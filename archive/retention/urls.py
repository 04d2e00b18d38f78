from django.urls import path

from . import views

app_name = "retention"

urlpatterns = [
    path("", views.policy_list, name="policies"),
    path("policies/new/", views.policy_edit, name="policy_create"),
    path("policies/<int:pk>/", views.policy_edit, name="policy_edit"),
    path("policies/<int:pk>/delete/", views.policy_delete, name="policy_delete"),
    path("holds/", views.hold_list, name="holds"),
    path("holds/new/", views.hold_create, name="hold_create"),
    path("holds/<int:pk>/release/", views.hold_release, name="hold_release"),
    path("expiry/", views.expiry_lists, name="expiry_lists"),
    path("expiry/check/", views.expiry_build, name="expiry_build"),
    path("expiry/<int:pk>/", views.expiry_detail, name="expiry_detail"),
    path("expiry/<int:pk>/decide/", views.expiry_decide, name="expiry_decide"),
    path("expiry/<int:pk>/report/", views.expiry_report, name="expiry_report"),
    path("expiry/<int:pk>/report.csv", views.expiry_report_csv, name="expiry_report_csv"),
]
