import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webadmin.settings")

app = Celery("webadmin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Task modules not named tasks.py (routes and queues: settings.CELERY_TASK_ROUTES).
app.autodiscover_tasks(["archive"], related_name="housekeeping_tasks")
