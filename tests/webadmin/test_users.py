"""WebAdmin users and groups (issue 15): list, create, edit, set password,
activate/deactivate, group membership, the staff flag — staff only, and a
staff member cannot take over a superuser or lock themselves out."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

ROUTES = [
    ("get", "webadmin:users", False),
    ("get", "webadmin:user_create", False),
    ("get", "webadmin:user_edit", True),
    ("get", "webadmin:user_password", True),
    ("get", "webadmin:groups", False),
    ("get", "webadmin:group_create", False),
    ("get", "webadmin:group_edit", "group"),
    ("post", "webadmin:user_active", True),  # last: the staff member's POST deactivates alice
]


@pytest.fixture
def staff(group_a):
    user = User.objects.create_user("sam", password="sam-pass-123", is_staff=True)
    user.groups.add(group_a)
    return user


def url(name: str, arg, alice: User, group: Group) -> str:
    if arg == "group":
        return reverse(name, args=[group.pk])
    return reverse(name, args=[alice.pk]) if arg else reverse(name)


def test_only_administrators_open_the_pages(client, alice, staff, group_a):
    for method, name, arg in ROUTES:
        target = url(name, arg, alice, group_a)
        client.logout()
        assert getattr(client, method)(target).status_code == 302, name  # to the login page
        client.force_login(alice)
        assert getattr(client, method)(target).status_code == 403, name
        client.force_login(staff)
        assert getattr(client, method)(target).status_code in (200, 302), name


def test_the_list_shows_users_groups_and_roles_in_the_products_look(client, staff, alice, admin_user):
    client.force_login(staff)
    html = client.get(reverse("webadmin:users")).content.decode()
    assert "webadmin.css" in html and 'id="users"' in html
    assert '<tr data-user="alice">' in html and "Sales" in html
    assert "Superuser" in html and "Administrator" in html
    found = client.get(reverse("webadmin:users"), {"q": "ali"}).content.decode()
    assert 'data-user="alice"' in found and 'data-user="sam"' not in found


def test_create_a_user_with_groups_staff_flag_and_a_checked_password(client, staff, group_a, group_b):
    client.force_login(staff)
    data = {
        "username": "carol",
        "email": "carol@example.com",
        "is_active": "on",
        "is_staff": "on",
        "groups": [str(group_a.pk), str(group_b.pk)],
        "password1": "a-long-passphrase-9",
        "password2": "a-long-passphrase-9",
    }
    weak = client.post(reverse("webadmin:user_create"), {**data, "password1": "123", "password2": "123"})
    assert weak.status_code == 200 and not User.objects.filter(username="carol").exists()
    assert "This password is too short" in weak.content.decode()
    differ = client.post(reverse("webadmin:user_create"), {**data, "password2": "something-else-9"})
    assert "The two passwords differ." in differ.content.decode()
    assert client.post(reverse("webadmin:user_create"), data).status_code == 302
    carol = User.objects.get(username="carol")
    assert carol.is_staff and carol.is_active and not carol.is_superuser
    assert set(carol.groups.all()) == {group_a, group_b}
    assert carol.check_password("a-long-passphrase-9")


def test_edit_set_password_and_deactivate(client, staff, alice, group_b):
    client.force_login(staff)
    response = client.post(
        reverse("webadmin:user_edit", args=[alice.pk]),
        {"username": "alice", "first_name": "Alice", "is_active": "on", "groups": [str(group_b.pk)]},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.first_name == "Alice" and list(alice.groups.all()) == [group_b]
    client.post(
        reverse("webadmin:user_password", args=[alice.pk]),
        {"new_password1": "new-alice-pass-77", "new_password2": "new-alice-pass-77"},
    )
    alice.refresh_from_db()
    assert alice.check_password("new-alice-pass-77")
    client.post(reverse("webadmin:user_active", args=[alice.pk]), {"active": "0"})
    alice.refresh_from_db()
    assert not alice.is_active
    client.post(reverse("webadmin:user_active", args=[alice.pk]), {"active": "1"})
    alice.refresh_from_db()
    assert alice.is_active


def test_a_field_error_stands_at_its_field_without_repeating_the_label(client, staff, alice):
    client.force_login(staff)
    html = client.post(reverse("webadmin:user_edit", args=[alice.pk]), {"username": "", "is_active": "on"}).content
    text = html.decode()
    assert '<tr class="error" data-field="username">' in text
    assert 'id="id_username_errors"' in text and "This field is required." in text
    assert "Username: Username" not in text


def test_administrators_cannot_lock_themselves_out(client, staff):
    client.force_login(staff)
    response = client.post(reverse("webadmin:user_edit", args=[staff.pk]), {"username": "sam"})
    assert "You cannot deactivate your own account." in response.content.decode()
    client.post(reverse("webadmin:user_active", args=[staff.pk]), {"active": "0"})
    staff.refresh_from_db()
    assert staff.is_active and staff.is_staff


def test_a_staff_member_cannot_change_a_superuser(client, staff, admin_user, group_a):
    client.force_login(staff)
    for name in ("webadmin:user_edit", "webadmin:user_password"):
        assert client.get(reverse(name, args=[admin_user.pk])).status_code == 403
    assert client.post(reverse("webadmin:user_active", args=[admin_user.pk]), {"active": "0"}).status_code == 403
    response = client.post(
        reverse("webadmin:group_edit", args=[group_a.pk]), {"name": "Sales", "members": [str(admin_user.pk)]}
    )
    assert response.status_code == 403 and not admin_user.groups.exists()
    client.force_login(admin_user)  # a superuser may
    response = client.post(
        reverse("webadmin:user_password", args=[admin_user.pk]),
        {"new_password1": "root-pass-phrase-1", "new_password2": "root-pass-phrase-1"},
    )
    assert response.status_code == 302
    assert client.get(reverse("webadmin:users")).status_code == 200  # still signed in


def test_groups_list_create_and_membership(client, staff, alice, bob, group_a):
    client.force_login(staff)
    assert client.post(reverse("webadmin:group_create"), {"name": "Board", "members": [str(bob.pk)]}).status_code == 302
    board = Group.objects.get(name="Board")
    assert list(board.user_set.all()) == [bob]
    client.post(reverse("webadmin:group_edit", args=[board.pk]), {"name": "Board", "members": [str(alice.pk)]})
    assert list(board.user_set.all()) == [alice]
    html = client.get(reverse("webadmin:groups")).content.decode()
    assert '<tr data-group="Board"><td>' in html and "<td>1</td>" in html
    duplicate = client.post(reverse("webadmin:group_create"), {"name": "Board"})
    assert duplicate.status_code == 200 and "already exists" in duplicate.content.decode()


def test_the_home_page_links_the_new_pages(client, staff):
    client.force_login(staff)
    html = client.get(reverse("webadmin:home")).content.decode()
    assert f'href="{reverse("webadmin:users")}"' in html and f'href="{reverse("webadmin:groups")}"' in html
    assert "/webadmin/manage/auth/" not in html
