"""The pure lifecycle rules: precedence, effects, and order independence."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_cloudmails import lifecycle
from django_cloudmails.lifecycle import Effect, Tracking, apply, effect_of, replay

T0 = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("current", "proposed"), list(itertools.product(lifecycle.PRECEDENCE, repeat=2))
)
def test_advance_keeps_the_higher_status_of_every_pair(current: str, proposed: str) -> None:
    expected = max(current, proposed, key=lifecycle.PRECEDENCE.index)
    assert lifecycle.advance(current, proposed) == expected


@pytest.mark.parametrize(
    ("current", "proposed"), list(itertools.product(lifecycle.PRECEDENCE, repeat=2))
)
def test_statuses_below_agrees_with_advance(current: str, proposed: str) -> None:
    replaces = current in lifecycle.statuses_below(proposed)
    assert replaces == (lifecycle.advance(current, proposed) == proposed != current)


def test_deferred_after_delivered_changes_nothing() -> None:
    assert lifecycle.advance(lifecycle.DELIVERED, lifecycle.DEFERRED) == lifecycle.DELIVERED


@pytest.mark.parametrize("event", lifecycle.EVENT_TYPES)
def test_every_event_type_has_an_effect_with_its_status(event: str) -> None:
    assert effect_of(event).status == lifecycle.EVENT_STATUS[event]


def test_bounce_effect_binds_reason_and_type_to_the_first_bounce() -> None:
    effect = effect_of("bounced", bounce_reason="550 user unknown", bounce_type="hard")
    (rule,) = [rule for rule in effect.rules if rule.field == "bounced_at"]
    assert rule.companions == ("bounce_reason", "bounce_type")
    assert effect.inputs == {"bounce_reason": "550 user unknown", "bounce_type": "hard"}


def test_earliest_bounce_keeps_its_reason_whatever_the_order() -> None:
    first = effect_of("bounced", bounce_reason="first", bounce_type="soft")
    second = effect_of("bounced", bounce_reason="second", bounce_type="hard")
    forward = replay([(first, at(1)), (second, at(2))])
    backward = replay([(second, at(2)), (first, at(1))])
    assert forward == backward
    assert (forward.bounced_at, forward.bounce_reason) == (at(1), "first")


def test_opens_count_and_keep_first_and_last_time() -> None:
    opened = effect_of("opened")
    state = replay([(opened, at(5)), (opened, at(1)), (opened, at(3))])
    assert (state.opens, state.first_opened_at, state.last_opened_at) == (3, at(1), at(5))


def _full_stream() -> list[tuple[Effect, datetime]]:
    return [
        (effect_of("delivered"), at(1)),
        (effect_of("opened"), at(2)),
        (effect_of("clicked"), at(3)),
        (effect_of("opened"), at(4)),
        (effect_of("unsubscribed"), at(5)),
        (effect_of("complained"), at(6)),
        (effect_of("bounced", bounce_reason="late", bounce_type="soft"), at(7)),
    ]


def test_every_permutation_of_a_message_events_gives_the_ordered_result() -> None:
    stream = _full_stream()
    ordered = replay(stream)
    results = {replay(permutation) for permutation in itertools.permutations(stream)}
    assert results == {ordered}


def test_ordered_full_stream_sets_every_fact() -> None:
    state = replay(_full_stream())
    assert state == Tracking(
        status=lifecycle.BOUNCED,
        delivered_at=at(1),
        bounced_at=at(7),
        bounce_reason="late",
        bounce_type="soft",
        complained_at=at(6),
        unsubscribed_at=at(5),
        first_opened_at=at(2),
        last_opened_at=at(4),
        first_clicked_at=at(3),
        last_clicked_at=at(3),
        opens=2,
        clicks=1,
    )


def test_apply_never_lowers_the_status() -> None:
    state = Tracking(status=lifecycle.BOUNCED)
    assert apply(state, effect_of("delivered"), at(1)).status == lifecycle.BOUNCED


_events = st.tuples(
    st.sampled_from(lifecycle.EVENT_TYPES),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(["hard", "soft"]),
)


@given(
    events=st.lists(_events, max_size=12, unique_by=lambda item: item[1]),
    start=st.sampled_from(lifecycle.PRECEDENCE),
    data=st.data(),
)
def test_any_order_of_distinct_events_gives_the_same_tracking(
    events: list[tuple[str, int, str]], start: str, data: st.DataObject
) -> None:
    stream = [
        (effect_of(name, bounce_reason=f"reason {ms}", bounce_type=kind), at(ms / 1000))
        for name, ms, kind in events
    ]
    shuffled = data.draw(st.permutations(stream))
    initial = Tracking(status=start)
    assert replay(shuffled, initial) == replay(sorted(stream, key=lambda e: e[1]), initial)


# Reports other than events.


def poll_answer(status: str | None, **fields: object) -> dict[str, object]:
    answer: dict[str, object] = {
        "status": status,
        "delivered_at": None,
        "failed_at": None,
        "opens": None,
        "clicks": None,
    }
    answer.update(fields)
    return answer


def test_a_status_the_lifecycle_does_not_know_changes_nothing() -> None:
    assert lifecycle.advance(lifecycle.SENT, "archived") == lifecycle.SENT
    assert lifecycle.advance(lifecycle.SENT, None) == lifecycle.SENT


def test_a_poll_takes_the_apis_delivered_at_and_the_higher_counters() -> None:
    state = Tracking(status=lifecycle.SENT, delivered_at=at(1), opens=3, clicks=0)

    polled = apply(
        state, lifecycle.POLLED, **poll_answer("delivered", delivered_at=at(2), opens=1, clicks=2)
    )

    assert (polled.status, polled.delivered_at, polled.opens, polled.clicks) == (
        lifecycle.DELIVERED,
        at(2),
        3,
        2,
    )


def test_a_poll_answer_without_facts_keeps_the_rows() -> None:
    state = Tracking(status=lifecycle.DEFERRED, delivered_at=at(1), opens=2)

    assert apply(state, lifecycle.POLLED, **poll_answer(None)) == state


def test_unknown_is_left_by_any_proof_and_never_failed_by_the_send_side() -> None:
    assert lifecycle.advance(lifecycle.UNKNOWN, lifecycle.SENT) == lifecycle.SENT
    assert lifecycle.advance(lifecycle.QUEUED, lifecycle.UNKNOWN) == lifecycle.UNKNOWN
    assert lifecycle.UNKNOWN not in lifecycle.REFUSABLE


@pytest.mark.parametrize(
    ("payload", "facts"),
    [
        ({}, ("", "hard")),
        ({"bounce_type": "SOFT", "bounce_reason": "452"}, ("452", "soft")),
        ({"bounce_type": "weird", "reason": "550"}, ("550", "hard")),
    ],
)
def test_bounce_facts_read_reason_and_type_tolerantly(
    payload: dict[str, str], facts: tuple[str, str]
) -> None:
    assert lifecycle.bounce_facts(payload) == facts


@pytest.mark.parametrize(
    ("event", "kind", "reason"),
    [
        ("bounced", "hard", "hard_bounce"),
        ("bounced", "soft", "soft_bounce"),
        ("complained", "", "complained"),
        ("unsubscribed", "", "unsubscribed"),
        ("opened", "", None),
    ],
)
def test_which_events_may_suppress(event: str, kind: str, reason: str | None) -> None:
    assert lifecycle.suppression_reason(event, kind) == reason
