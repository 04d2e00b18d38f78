"""Create the first administrator if there is none (used by `make run`).

The password is taken from ADMIN_PASSWORD or generated and printed once.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first administrator (username ADMIN_USERNAME, default 'admin')."

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An administrator exists already.")
            return
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        group, _ = Group.objects.get_or_create(name="Archive")
        user.groups.add(group)
        if os.environ.get("ADMIN_PASSWORD"):
            self.stdout.write(f"Administrator '{username}' created with ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                self.style.WARNING(f"Administrator '{username}' created. Password (shown once): {password}")
            )
