"""send_campaign: personalised, streamed in chunks, one task per chunk, sent by a worker."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from django_cloudmails import backends, suppression
from django_cloudmails.exceptions import CloudMailsInvalidMessage
from django_cloudmails.models import Delivery
from django_cloudmails.tasks import send_campaign

pytestmark = pytest.mark.django_db(transaction=True)

HTML = "<p>Hello {{name}}, {{shop}} has {{offer}} for you.</p>"
TEXT = "Hello {{name}}, {{shop}} has {{offer}} for you."


@pytest.fixture
def enqueued(monkeypatch: Any, cloudmails_settings: dict[str, Any]) -> list[list[str]]:
    """The tasks the campaign enqueues, kept here instead of reaching a broker."""
    kept: list[list[str]] = []
    monkeypatch.setattr(backends, "_enqueue", kept.extend)
    return kept


def payload(address: str) -> dict[str, Any]:
    return Delivery.objects.get(to_email=address).payload  # type: ignore[no-any-return]


def test_each_recipient_gets_their_values_escaped_in_html_only(enqueued: Any) -> None:
    report = send_campaign(
        [("ann@example.com", {"name": "Ann <3"}), ("bob@example.com", {"name": "Bob & co"})],
        subject="{{name}}: {{offer}}",
        html=HTML,
        text=TEXT,
        merge_global_data={"shop": "Acme", "offer": "20% off"},
    )

    assert (report.recipients, report.queued, report.chunks) == (2, 2, 1)
    ann = payload("ann@example.com")
    assert ann["subject"] == "Ann <3: 20% off"
    assert ann["html"] == "<p>Hello Ann &lt;3, Acme has 20% off for you.</p>"
    assert ann["text"] == "Hello Ann <3, Acme has 20% off for you."
    assert (
        payload("bob@example.com")["html"] == "<p>Hello Bob &amp; co, Acme has 20% off for you.</p>"
    )


def test_recipients_may_be_addresses_pairs_or_mappings(enqueued: Any) -> None:
    send_campaign(
        [
            "plain@example.com",
            ("pair@example.com", {"name": "Pat"}),
            {"email": "map@example.com", "name": "Max"},
        ],
        subject="Hi {{name}}",
        text="Hello",
        merge_global_data={"name": "friend"},
    )

    subjects = dict(Delivery.objects.values_list("to_email", "subject"))
    assert subjects == {
        "plain@example.com": "Hi friend",
        "pair@example.com": "Hi Pat",
        "map@example.com": "Hi Max",
    }


def test_recipients_are_written_in_chunks_one_task_each(enqueued: list[list[str]]) -> None:
    report = send_campaign(
        [f"u{i}@example.com" for i in range(5)], subject="Hi", text="Hello", chunk_size=2
    )

    assert report.chunks == 3
    assert [len(task) for task in enqueued] == [2, 2, 1]
    assert Delivery.objects.filter(status="queued").count() == 5


def test_a_queryset_is_read_in_chunks_without_filling_its_cache(enqueued: Any) -> None:
    User.objects.bulk_create(
        [User(username=f"u{i}", email=f"u{i}@example.com", first_name=f"N{i}") for i in range(5)]
    )
    people = User.objects.order_by("pk").values("email", "first_name")

    report = send_campaign(people, subject="Hi {{first_name}}", text="Hello", chunk_size=2)

    assert people._result_cache is None
    assert report.chunks == 3
    assert Delivery.objects.get(to_email="u4@example.com").subject == "Hi N4"


def test_a_missing_value_raises_before_anything_of_its_chunk_is_written(
    enqueued: list[list[str]],
) -> None:
    recipients = [
        ("a@example.com", {"name": "A"}),
        ("b@example.com", {"name": "B"}),
        "c@example.com",
    ]

    with pytest.raises(CloudMailsInvalidMessage, match=r"\{\{name\}\}.*c@example\.com") as info:
        send_campaign(recipients, subject="Hi {{name}}", text="Hello", chunk_size=2)

    assert sorted(Delivery.objects.values_list("to_email", flat=True)) == [
        "a@example.com",
        "b@example.com",
    ]
    assert len(enqueued) == 1
    assert info.value.campaign_report.queued == 2  # type: ignore[attr-defined]


def test_an_address_met_twice_keeps_each_occurrences_values(enqueued: list[list[str]]) -> None:
    send_campaign(
        [("a@example.com", {"n": "1"}), ("a@example.com", {"n": "2"})],
        subject="#{{n}}",
        text="Hello",
    )

    assert sorted(Delivery.objects.values_list("subject", flat=True)) == ["#1", "#2"]
    assert len(enqueued) == 1  # still one chunk, one task


def test_suppressed_recipients_are_counted_and_not_queued(enqueued: Any) -> None:
    suppression.suppress("gone@example.com", "hard_bounce")

    report = send_campaign(["ok@example.com", "gone@example.com"], subject="Hi", text="Hello")

    assert (report.queued, report.suppressed) == (1, 1)
    assert Delivery.objects.get(to_email="gone@example.com").status == "failed"


def test_a_recipient_of_an_unknown_shape_is_refused(enqueued: Any) -> None:
    with pytest.raises(CloudMailsInvalidMessage, match="address_key"):
        send_campaign([{"mail": "a@example.com"}], subject="Hi", text="Hello")
    with pytest.raises(CloudMailsInvalidMessage, match="not int"):
        send_campaign([42], subject="Hi", text="Hello")  # type: ignore[list-item]
    assert not Delivery.objects.exists()


def test_a_campaign_needs_a_body(enqueued: Any) -> None:
    with pytest.raises(CloudMailsInvalidMessage, match="html or a text"):
        send_campaign(["a@example.com"], subject="Hi")


@pytest.mark.celery
def test_a_worker_sends_one_request_per_chunk(
    cloudmails_settings: dict[str, Any], sandbox: Any, celery_workers: Any
) -> None:
    celery_workers.start()

    report = send_campaign(
        ({"email": f"u{i}@example.com", "name": f"N{i}"} for i in range(7)),
        subject="Hi {{name}}",
        html="<p>{{name}}</p>",
        chunk_size=3,
    )
    celery_workers.finished(report.chunks)

    sends = [r for r in sandbox.requests if r.path.startswith("/v1/send")]
    assert sorted((r.path, len(r.json.get("messages", [r.json]))) for r in sends) == [
        ("/v1/send", 1),
        ("/v1/send/batch", 3),
        ("/v1/send/batch", 3),
    ]
    assert sorted(m.payload["html"] for m in sandbox.messages) == [f"<p>N{i}</p>" for i in range(7)]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
