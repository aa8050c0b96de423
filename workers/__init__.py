"""Celery app, beat schedule and tasks: thin wrappers over digest/.

Run: `celery -A workers worker` (any number) and `celery -A workers beat` (exactly one).
"""

from workers.app import app

__all__ = ["app"]
