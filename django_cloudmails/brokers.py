"""A Celery broker that needs no server: kombu's filesystem transport in a local folder.

    # settings.py
    from django_cloudmails.brokers import FILESYSTEM_TRANSPORT, filesystem_transport_options

    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
    if CELERY_BROKER_URL == "filesystem://":
        CELERY_BROKER_TRANSPORT = FILESYSTEM_TRANSPORT
        CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_transport_options(BASE_DIR / "broker")

For development, tests and demos on one machine: every process using the folder shares
the queue. A message is deleted when a worker fetches it, so a worker killed with SIGKILL
loses the tasks it took; ``recover_deliveries`` hands their rows to a worker again.
:data:`FILESYSTEM_TRANSPORT` is kombu's transport with messages published whole (see
:mod:`.filesystem_transport`); kombu's own lets a polling worker take a message still
being written, and stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: ``CELERY_BROKER_TRANSPORT`` for ``filesystem://``: imported by kombu when used only.
FILESYSTEM_TRANSPORT = "django_cloudmails.filesystem_transport:Transport"


def filesystem_transport_options(
    folder: str | Path, *, polling_interval: float = 0.1
) -> dict[str, Any]:
    """``CELERY_BROKER_TRANSPORT_OPTIONS`` for ``filesystem://`` in ``folder``, whose
    sub-folders are created here (kombu needs them to exist). Workers look for new
    messages every ``polling_interval`` seconds."""
    root = Path(folder)
    queue, control = root / "queue", root / "control"
    for path in (queue, control):
        path.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "control_folder": str(control),
        "polling_interval": polling_interval,
    }
