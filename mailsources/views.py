from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mailsources.models import MailSource


@staff_member_required(login_url="login")
def source_list(request: HttpRequest) -> HttpResponse:
    return render(request, "mailsources/list.html", {"sources": MailSource.objects.all()})
