"""Decoding request bodies: the nesting bound found without recursion, storable strings."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_cloudmails.json_body import MAX_DEPTH, BodyError, load_json, nesting_depth


def nest(depth: int, inner: object = 1) -> object:
    value = inner
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [0, 1, 2, 5, 64, 65, 300])
def test_depth_of_nested_arrays_and_objects_is_exact(depth: int) -> None:
    assert nesting_depth(json.dumps(nest(depth)).encode()) == depth


def test_brackets_inside_strings_do_not_count() -> None:
    body = json.dumps({"a": "[[[[{{{{", "b": ["]]]]"]}).encode()
    assert nesting_depth(body) == 2


def test_escaped_quotes_and_backslashes_do_not_end_strings() -> None:
    body = json.dumps({"a": 'x\\"[[[[', "b": "\\", "c": ['[\\\\"[[']}).encode()
    assert nesting_depth(body) == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ax'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@given(json_values, st.booleans())
def test_depth_agrees_with_the_parsed_value(value: object, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting_depth(body) == depth_of(value)


def test_body_at_the_bound_is_decoded() -> None:
    value = nest(MAX_DEPTH)
    assert load_json(json.dumps(value).encode()) == value


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(nest(MAX_DEPTH + 1)).encode(),
        b"[" * (sys.getrecursionlimit() * 20) + b"]" * (sys.getrecursionlimit() * 20),
        b"[" * (sys.getrecursionlimit() * 20),
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ],
    ids=["one past the bound", "far past the recursion limit", "unclosed", "objects"],
)
def test_deeper_bodies_are_refused_before_parsing(body: bytes) -> None:
    with pytest.raises(BodyError, match=f"nested more than {MAX_DEPTH} levels"):
        load_json(body)


def test_nul_and_lone_surrogates_become_replacement_characters() -> None:
    body = b'{"a\\u0000": ["x\\u0000y", "\\udc00", "\\ud83d\\ude00"], "b": "\\u00e9"}'
    assert load_json(body) == {"a\ufffd": ["x\ufffdy", "\ufffd", "\U0001f600"], "b": "\xe9"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"[NaN]", "not valid JSON"),
        (b"[1e400]", "not valid JSON"),
        (b"[" + b"9" * 5000 + b"]", "not valid JSON"),
    ],
)
def test_undecodable_bodies_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(BodyError, match=reason):
        load_json(body)
