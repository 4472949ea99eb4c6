"""The served exchange's admin door, on the same loopback port as its Kraken REST API.

    POST /admin/price   {"pair": "BTC/USD", "price": "42000", "volume": "0.5"}   (volume optional)
    GET  /admin/price   the last price of every pair that has one

A POST is a tick: the market moves there (resting orders, stops and take-profits react),
the print goes on the tape (`market_data`), and the answer lists the trades it caused.
`curl -d '{"pair":"BTC/USD","price":"42000"}' http://127.0.0.1:8765/admin/price` works (the
body is read as JSON whatever its Content-Type; a form `pair=...&price=...` works too).
Numbers are read as exact decimals. Only a loopback client is served (403 otherwise), on
top of the server binding to loopback only. Not a Kraken endpoint: no key, no signature.
"""
from __future__ import annotations

import ipaddress
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.paper import market_data
from triplegain_fsm.paper.api import JSON, Reply
from triplegain_fsm.paper.errors import KrakenRejection

if TYPE_CHECKING:
    from triplegain_fsm.paper import PaperExchange

PREFIX = "/admin/"


def is_admin_path(path: str) -> bool:
    return urlsplit(path).path.startswith(PREFIX)


def _reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload, default=str).encode(), JSON)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _fields(body: bytes) -> dict[str, Any]:
    text = body.decode("utf-8").strip()
    if text.startswith("{"):
        data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data
    return dict(parse_qsl(text, keep_blank_values=True))


class Admin:
    def __init__(self, exchange: PaperExchange) -> None:
        self.exchange = exchange

    def handle(self, method: str, path: str, body: bytes, client_host: str) -> Reply:
        if not _is_loopback(client_host):
            return _reply(403, {"error": "the admin endpoint answers loopback clients only"})
        route = urlsplit(path).path.rstrip("/")
        if route != "/admin/price":
            return _reply(404, {"error": f"no admin endpoint {route}; there is /admin/price (GET, POST)"})
        if method.upper() == "GET":
            return _reply(200, {"prices": self._prices()})
        if method.upper() != "POST":
            return _reply(405, {"error": "use GET or POST"})
        return self._set_price(body)

    def _prices(self) -> dict[str, str]:
        engine = self.exchange.engine
        prices = {}
        for pair_id in engine.registry.pairs:
            last = engine.last_price(pair_id)
            if last is not None:
                prices[pair_id] = str(last)
        return prices

    def _set_price(self, body: bytes) -> Reply:
        try:
            fields = _fields(body)
        except (UnicodeDecodeError, ValueError) as exc:
            return _reply(400, {"error": f"body: a JSON object {{\"pair\", \"price\"[, \"volume\"]}} ({exc})"})
        missing = [name for name in ("pair", "price") if fields.get(name) in (None, "")]
        if missing:
            return _reply(400, {"error": f"missing {', '.join(missing)}"})
        try:
            pair_id, price, trades = market_data.tick(self.exchange, str(fields["pair"]), str(fields["price"]),
                                                      fields.get("volume"))
        except KrakenRejection as exc:
            return _reply(400, {"error": f"pair {fields['pair']!r}: {exc.error}"})
        except ValidationError as exc:
            return _reply(400, {"error": str(exc)})
        return _reply(200, {"pair": pair_id, "price": str(price), "trades": trades})
