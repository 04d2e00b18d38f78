"""The auditor persona: carol, in the group "Auditors" (which a post-migrate
handler keeps, with the permission ``integrity.audit``) and in no owner group
(the fixture ``auditor`` of tests/conftest.py)."""

from __future__ import annotations

AUDITOR_PASSWORD = "carol-pass-123"


def make_auditor(username: str = "carol", *, staff: bool = False):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, password=AUDITOR_PASSWORD, is_staff=staff)
    user.groups.add(Group.objects.get(name="Auditors"))
    return user
