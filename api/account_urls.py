"""The user's own token page, at /account/tokens/ (outside the API's namespace)."""

from django.urls import path

from api import account

urlpatterns = [
    path("", account.token_list, name="tokens"),
    path("<int:pk>/revoke/", account.token_revoke, name="token_revoke"),
]
