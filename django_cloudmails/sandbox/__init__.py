"""A local CloudMails API simulator for tests, development and benchmarks.

Standard library only, so it never needs Django configured; it signs webhooks with its
own code, never the package's, so that it can catch the package's mistakes::

    from django_cloudmails.sandbox import Sandbox

    with Sandbox(api_key="test-key", verified_senders=["@shop.example"]) as sb:
        ...  # point the client at sb.url, then look at sb.messages
        sb.wait_idle()

or from a shell: ``python -m django_cloudmails.sandbox --port 8025``.

Simulator addresses at ``simulator.cloudmails.test`` (``delivered@``, ``bounce@``,
``softbounce@``, ``deferred@``, ``complaint@``, ``open@``, ``click@``, ``unsubscribe@``,
``reject@``, each with an optional ``+label``) decide each message's fate; ``sb.faults``
switches on errors, latency, dropped connections, lost responses and lost, duplicated or
reordered webhooks. Webhook events carry the API reference's fields only, unless
``Sandbox(rich_events=True)``.
"""

from __future__ import annotations

from .faults import Faults
from .simulator import Sandbox
from .state import RequestRecord, SandboxMessage

__all__ = ["Faults", "RequestRecord", "Sandbox", "SandboxMessage"]
