"""The Celery app. The beat schedule is owned by code: see collator/schedule.py."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")

app = Celery("collator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
