"""A directory's groups mapped onto WebAdmin's: ``OIDC_GROUP_MAP`` /
``LDAP_GROUP_MAP`` as ``directory-group=target,…``, where a target is a
WebAdmin group's name or one of the flags ``staff`` and ``superuser``.

Applied on every sign-in: the user gets exactly the mapped groups and flags
the directory grants now. Groups no mapping names (given by an administrator
in WebAdmin) are left as they are."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Group, User
from django.db import transaction

from webadmin.auth.config import FLAGS, GroupMap


def mapped_targets(mapping: GroupMap, directory_groups: Iterable[str]) -> set[str]:
    granted: set[str] = set()
    for group in directory_groups:
        granted.update(mapping.get(str(group).casefold(), ()))
    return granted


@transaction.atomic
def apply_group_map(user: User, mapping: GroupMap, directory_groups: Iterable[str]) -> None:
    granted = mapped_targets(mapping, directory_groups)
    user.is_staff = "staff" in granted or "superuser" in granted
    user.is_superuser = "superuser" in granted
    user.save(update_fields=["is_staff", "is_superuser"])
    managed = {target for targets in mapping.values() for target in targets if target not in FLAGS}
    wanted = [Group.objects.get_or_create(name=name)[0] for name in sorted(granted - set(FLAGS))]
    user.groups.remove(*user.groups.filter(name__in=managed).exclude(pk__in=[g.pk for g in wanted]))
    user.groups.add(*wanted)
