"""Celery adapters of the project app: the dashboard's daily figures."""

from __future__ import annotations

from celery import shared_task

from webadmin import dashboard


@shared_task(ignore_result=True)
def refresh_dashboard_figures(full: bool = False) -> None:
    # Idempotent: each run replaces the rows of the days it covers.
    dashboard.figures_refresh(full=full)
