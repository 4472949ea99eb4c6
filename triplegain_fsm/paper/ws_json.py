"""JSON for the WebSocket v2 wire: numbers are exact Decimals both ways, never floats.

Kraken's v2 sends amounts as JSON numbers at full precision, and clients must read
them with `parse_float=Decimal`. The standard encoder can only write a Decimal by
going through float, so this small writer emits a Decimal's own digits as the
number's text (`0.00012345`, never `1.2345e-04` rounded through a double).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_string = json.JSONEncoder(ensure_ascii=False).encode


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def number_text(value: Decimal) -> str:
    """A finite Decimal as a JSON number: plain digits, no exponent, no trailing zeros."""
    if not value.is_finite():
        raise ValueError(f"not a JSON number: {value}")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def dumps(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return number_text(value)
    if isinstance(value, float):
        raise TypeError("a float on the WebSocket wire: use Decimal for money, int for counts")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_string(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
