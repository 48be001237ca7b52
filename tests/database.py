"""DATABASES entries from a ``postgresql://`` URL, for the test settings and benchmarks."""

from __future__ import annotations

from urllib.parse import urlsplit


def postgresql(url: str, *, default_name: str = "postgres") -> dict[str, object]:
    """The Django DATABASES entry for ``url`` (user, password, host, port, name)."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or default_name,
        "USER": parts.username or "postgres",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))
