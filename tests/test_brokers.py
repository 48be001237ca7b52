"""The filesystem broker: kombu's transport with messages published whole."""

from __future__ import annotations

import threading
from pathlib import Path

from kombu import Connection

from django_cloudmails.brokers import FILESYSTEM_TRANSPORT, filesystem_transport_options

MESSAGES = 100


def test_a_consumer_polling_while_messages_are_published_reads_every_one_whole(
    tmp_path: Path,
) -> None:
    options = filesystem_transport_options(tmp_path, polling_interval=0.0)

    def connection() -> Connection:
        return Connection(
            "filesystem://", transport=FILESYSTEM_TRANSPORT, transport_options=options
        )

    # Large enough that writing one takes long enough for kombu's own transport to be
    # caught out every time.
    body = {"ids": [f"{n:036d}" for n in range(5_000)]}

    def publish() -> None:
        with connection() as producing, producing.SimpleQueue("race") as queue:
            for _ in range(MESSAGES):
                queue.put(body)

    with connection() as consuming, consuming.SimpleQueue("race") as queue:
        publisher = threading.Thread(target=publish)
        publisher.start()
        received = []
        for _ in range(MESSAGES):
            message = queue.get(timeout=30)
            received.append(message.payload)
            message.ack()
        publisher.join()

    assert received == [body] * MESSAGES
    assert sorted(path.name for path in (tmp_path / "queue").iterdir()) == []
