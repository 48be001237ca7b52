from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def use_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite's default journal costs about 1 ms a commit; WAL makes it cheap."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")


class DemoConfig(AppConfig):
    name = "example_project.demo"
    label = "demo"

    def ready(self) -> None:
        connection_created.connect(use_wal, dispatch_uid="example-sqlite-wal")
