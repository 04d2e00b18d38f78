from django.urls import path

from . import views

app_name = "integrity"

urlpatterns = [
    path("", views.overview, name="overview"),
]
