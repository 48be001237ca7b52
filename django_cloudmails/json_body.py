"""Decoding a request body as JSON within bounds, before any of it is trusted.

Python's parser recurses once per level of nesting, so a body of a few thousand ``[``
overflows the stack (a RecursionError, and later one in ``json.dumps``): the depth is
measured first, by a scan that does not recurse. Strings that no database can store
(NUL, lone surrogates, which only JSON escapes can produce from UTF-8) are replaced.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

#: Deepest nesting of arrays and objects a body may have (found before parsing).
MAX_DEPTH = 64


class BodyError(ValueError):
    """The body is not UTF-8, not standard JSON, or nested deeper than :data:`MAX_DEPTH`."""


_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.__getitem__
#: JSON escapes that decode to what no database stores: NUL and (lone) surrogates.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, without parsing it.

    Strings are skipped (escaped quotes and backslashes first), then the brackets left
    are summed in C. Exact for valid JSON, and for the part of an invalid text that a
    parser would read before failing, which is all the recursion a parser could do.
    """
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(body.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_BRACKET_STEP, brackets)), default=0)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


#: Built once: ``json.loads`` with hooks would build a decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _storable(value: Any) -> Any:
    """``value`` with NUL and lone surrogates (in strings and keys) replaced by U+FFFD."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_UNSTORABLE.sub("\ufffd", key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def load_json(body: bytes) -> Any:
    """Decode a request body: UTF-8, standard JSON, finite numbers, at most
    :data:`MAX_DEPTH` deep (checked before parsing, so no recursion can overflow)."""
    # Fewer brackets than the bound cannot nest deeper: most bodies skip the scan.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and nesting_depth(body) > MAX_DEPTH:
        raise BodyError(f"The body is nested more than {MAX_DEPTH} levels deep.")
    try:
        text = body.decode("utf-8")
        data = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise BodyError("The body is not UTF-8.") from None
    except RecursionError:  # pragma: no cover (the depth check comes first)
        raise BodyError("The body is nested too deeply.") from None
    except ValueError as err:
        raise BodyError(f"The body is not valid JSON: {err}") from None
    if _UNSTORABLE_ESCAPE.search(body):
        data = _storable(data)
    return data
