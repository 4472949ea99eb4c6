"""Bytes on the wire: encoding a request body and turning any HTTP outcome into a result or a KrakenError.

Kept apart from the client so the rules are testable without a session: a body is
built once as a string (it is what gets signed and what gets sent), every JSON
number is read as Decimal (money never passes through float), and every way a
response can be wrong has its own class.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests

from triplegain_fsm.kraken.errors import (
    ConnectionFailed,
    HttpError,
    HttpServerError,
    HttpTooManyRequests,
    KrakenError,
    MalformedResponse,
    RequestTimeout,
    TransportError,
    classify,
)
from triplegain_fsm.kraken.params import wire_decimal

# Parameters that are booleans in Kraken's JSON schema ("true"/"false" when form-encoded).
JSON_BOOLEANS = frozenset({"validate", "reduce_only", "trades", "docalcs", "post_only", "consolidate_taker"})


def form_value(name: str, value: Any) -> str:
    """One parameter as a form string: bools lowercase, Decimals plain, floats refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return wire_decimal(value)
    if isinstance(value, (int, str)):
        return str(value)
    raise TypeError(f"parameter {name}: {type(value).__name__} cannot be sent (use str, int, bool or Decimal)")


def _json_value(name: str, value: Any) -> Any:
    if name in JSON_BOOLEANS and value in ("true", "false"):
        return value == "true"
    if isinstance(value, Decimal):
        return wire_decimal(value)
    if isinstance(value, float):
        raise TypeError(f"parameter {name}: float cannot be sent, use Decimal or str")
    return value


def encode_body(nonce: int, params: Mapping[str, Any], as_json: bool) -> str:
    """The exact body string to sign and send; the nonce goes first."""
    if as_json:
        payload = {"nonce": nonce, **{k: _json_value(k, v) for k, v in params.items()}}
        return json.dumps(payload, separators=(",", ":"))
    return urlencode([("nonce", str(nonce)), *((k, form_value(k, v)) for k, v in params.items())])


def query_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Public-call query parameters, formatted like form values."""
    return {k: form_value(k, v) for k, v in params.items()}


def send(endpoint: str, do_send: Callable[[], requests.Response]) -> requests.Response:
    """Run one HTTP exchange and map transport failures to their classes.

    The requests exception is not chained (`from None`): it holds the prepared
    request, whose headers carry the API key.
    """
    try:
        return do_send()
    except requests.Timeout as exc:
        raise RequestTimeout(f"{type(exc).__name__}: {exc}", endpoint=endpoint) from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError) as exc:
        raise ConnectionFailed(f"{type(exc).__name__}: {exc}", endpoint=endpoint) from None
    except requests.RequestException as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}", endpoint=endpoint) from None


def parse_response(endpoint: str, response: requests.Response) -> dict[str, Any]:
    """Kraken's `{"error": [...], "result": {...}}` -> result, or raise the classified error."""
    if response.status_code != 200:
        cls = (HttpServerError if response.status_code >= 500
               else HttpTooManyRequests if response.status_code == 429 else HttpError)
        raise cls(f"HTTP {response.status_code} {response.reason or ''}".strip(),
                  status=response.status_code, endpoint=endpoint)
    try:
        payload = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise MalformedResponse(
            f"body is not JSON ({len(response.content)} bytes, "
            f"content-type {response.headers.get('Content-Type')!r})", endpoint=endpoint) from None
    return _result_of(endpoint, payload)


def _result_of(endpoint: str, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise MalformedResponse(f"body is a JSON {type(payload).__name__}, not an object", endpoint=endpoint)
    errors = payload.get("error")
    if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
        raise MalformedResponse("'error' is missing or not a list of strings", endpoint=endpoint)
    if errors:
        raise classify(errors, endpoint=endpoint)
    result = payload.get("result")
    if not isinstance(result, dict):
        raise MalformedResponse("'result' is missing or not an object", endpoint=endpoint)
    return result


def require_mapping(endpoint: str, value: Any, what: str) -> dict[str, Any]:
    """A result field that must be an object of objects (orders, trades, positions)."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise MalformedResponse(f"{what} must be an object of objects", endpoint=endpoint)
    return value


def redact(exc: KrakenError, secrets: tuple[str, ...]) -> KrakenError:
    """Belt and braces: blank out any secret that somehow reached an error message."""
    text = str(exc)
    if not any(s and s in text for s in secrets):
        return exc
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    exc.args = (text,)
    return exc
