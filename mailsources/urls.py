from django.urls import path

from mailsources import views

app_name = "mailsources"

urlpatterns = [
    path("", views.source_list, name="list"),
]
