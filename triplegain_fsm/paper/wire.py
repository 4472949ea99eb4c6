"""Request bodies in, response bodies out, the way Kraken's REST front end reads and writes them.

Private calls carry form-encoded bodies by default and JSON when the client says
`Content-Type: application/json`; both become one flat `{name: string}` map (a
JSON `{"close": {"ordertype": ...}}` becomes `close[ordertype]`, as in a form).
JSON numbers are read as Decimal, never float. On the way out, the only JSON
numbers are integers, timestamps and the fee-tier percentages of AssetPairs,
which Kraken also sends as numbers.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from triplegain_fsm.paper.errors import INVALID_ARGUMENTS, KrakenRejection


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_scalar(v) for v in value)
    if isinstance(value, Mapping):
        raise KrakenRejection(INVALID_ARGUMENTS)
    return str(value)


def flatten(data: Mapping[str, Any]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            for inner, inner_value in value.items():
                if inner_value is not None:
                    flat[f"{key}[{inner}]"] = _scalar(inner_value)
        else:
            flat[key] = _scalar(value)
    return flat


def parse_form(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


def is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def parse_body(body: bytes, content_type: str | None) -> dict[str, str]:
    """The parameters of a request body; an undecodable body is `EGeneral:Invalid arguments`."""
    try:
        text = body.decode("utf-8")
        if not is_json(content_type):
            return parse_form(text)
        data = json.loads(text, parse_float=Decimal) if text.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KrakenRejection(INVALID_ARGUMENTS) from None
    if not isinstance(data, Mapping):
        raise KrakenRejection(INVALID_ARGUMENTS)
    return flatten(data)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Wire-format only (fee tiers): the exact decimal text becomes a JSON number.
        return int(value) if value == value.to_integral_value() else float(value)  # float-ok: wire format
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def envelope(result: Any = None, errors: list[str] | None = None) -> dict[str, Any]:
    return {"error": list(errors or []), "result": {} if result is None else result}


def encode(payload: Any) -> bytes:
    return json.dumps(payload, default=_default, separators=(",", ":")).encode()
