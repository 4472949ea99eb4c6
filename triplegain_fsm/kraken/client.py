"""KrakenClient: signed, paced, retried REST calls, and the typed helpers the core calls.

Every HTTP request goes through `self.session` (the paper exchange mounts its
adapter there). A private call assigns its nonce, encodes the body once, signs
exactly those bytes and sends them while holding the key's lock, so nonces reach
Kraken in increasing order however many threads call. All of that happens inside
the retried function: a resend always carries a fresh nonce and signature.

What is retried is decided by the error classes (see retry.py); AddOrder is never
resent blindly (see submission.py).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import requests

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken import wire
from triplegain_fsm.kraken.errors import (
    ConnectionFailed,
    KrakenError,
    MalformedResponse,
    MissingCredentials,
    RateLimitError,
    RequestTimeout,
    TransportError,
)
from triplegain_fsm.kraken.order_request import OrderRequest
from triplegain_fsm.kraken.pairs import PairInfo, PairRegistry
from triplegain_fsm.kraken.params import wire_decimal
from triplegain_fsm.kraken.ratelimit import Pacer
from triplegain_fsm.kraken.retry import is_testing, make_retrying, retry_not_placed, retry_reads
from triplegain_fsm.kraken.secret import Secret
from triplegain_fsm.kraken.signing import NonceSource, sign
from triplegain_fsm.kraken.submission import AddOrderAck, OrderSubmitter
from triplegain_fsm.money import to_decimal

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "triplegain-fsm/0.1 (+https://github.com/triplegain)"
BATCH_SIZE = 20   # QueryOrders / QueryTrades ids per call (sources say 20 or 50: 20 is safe)

# Private calls that only read (or are idempotent): safe to retry on any retry-safe error.
READ_METHODS = frozenset({
    "QueryOrders", "OpenOrders", "ClosedOrders", "QueryTrades", "TradesHistory", "OpenPositions",
    "Balance", "BalanceEx", "TradeBalance", "Ledgers", "QueryLedgers", "GetWebSocketsToken",
    "CancelAllOrdersAfter",   # re-arming the same timer twice is harmless
})


class MetaStore(Protocol):
    """Where a client may keep a few values across restarts (the core's store)."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


_Secret = Secret   # the name this module has always used


class _KeyLane:
    """One key's nonce source and send lock, shared by every client in the process using that key."""

    _lanes: dict[str, _KeyLane] = {}
    _lanes_lock = threading.Lock()

    def __init__(self) -> None:
        self.nonces = NonceSource()
        self.lock = threading.Lock()

    @classmethod
    def for_key(cls, fingerprint: str) -> _KeyLane:
        with cls._lanes_lock:
            return cls._lanes.setdefault(fingerprint, cls())


def _fingerprint(api_key: str, length: int = 8) -> str:
    """A short hash that tells keys apart in a repr without revealing them."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:length]


def _batches(ids: Sequence[str]) -> list[list[str]]:
    ids = [str(i) for i in ids]
    return [ids[i:i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]


class KrakenClient:
    """Kraken spot REST. Public calls need no key; private calls need both key and secret."""

    def __init__(self, api_key: str | None = None, api_secret: str | None = None,
                 base_url: str = "https://api.kraken.com", *, tier: str = "starter", timeout: float = 10.0,
                 session: requests.Session | None = None, user_agent: str = DEFAULT_USER_AGENT,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 max_attempts: int = 4, max_retry_seconds: float = 30.0, deadline_seconds: float = 5.0,
                 settle_seconds: float = 3.0, max_submissions: int = 2, lookup_attempts: int = 4) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValidationError("api_key and api_secret: give both or neither")
        if api_secret is not None:
            _check_secret(api_secret)
        if timeout <= 0 or max_attempts < 1 or max_retry_seconds < 0:
            raise ValidationError("timeout, max_attempts, max_retry_seconds: must be positive")
        self._key = _Secret(api_key) if api_key is not None else None
        self._secret = _Secret(api_secret) if api_secret is not None else None
        self._lane = _KeyLane.for_key(_fingerprint(api_key, 32)) if api_key is not None else None
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.user_agent = user_agent
        self.session = session if session is not None else requests.Session()
        self.clock = clock
        self._sleep = sleep
        self.max_attempts, self.max_retry_seconds = max_attempts, max_retry_seconds
        self.pacer = Pacer(tier, clock=clock, sleep=self.pause)
        # (method, outcome) for every call that got no HTTP answer at all (timeout, refused, reset):
        # requests' response hooks never see those, and telemetry must (Metrics counts them).
        self.on_unanswered: list[Callable[[str, str], None]] = []
        self.pairs = PairRegistry(lambda: self.public("AssetPairs"))
        self.submitter = OrderSubmitter(self, deadline_seconds=deadline_seconds, settle_seconds=settle_seconds,
                                         max_submissions=max_submissions, lookup_attempts=lookup_attempts)

    def __repr__(self) -> str:
        key = f"<redacted #{_fingerprint(self._key.reveal())}>" if self._key else "None"
        return f"KrakenClient(base_url={self.base_url!r}, tier={self.pacer.tier.name!r}, api_key={key})"

    def keep_nonces(self, meta: MetaStore) -> None:
        """Persist this key's nonce floor in `meta` (the core's store), so a restart starts above it."""
        if self._lane is None or self._key is None:
            return
        name = f"nonce_floor:{_fingerprint(self._key.reveal(), 16)}"
        stored = meta.get_meta(name)
        self._lane.nonces.persist(int(stored) if stored else 0, lambda floor: meta.set_meta(name, str(floor)))

    def pause(self, seconds: float) -> None:
        """Every wait the client makes (pacer, retries, settling) goes through here."""
        if seconds > 0 and not is_testing():
            self._sleep(seconds)

    # --- raw calls --------------------------------------------------------------------

    def public(self, method: str, **params: Any) -> dict[str, Any]:
        """GET /0/public/<method>: the `result` object, or a classified KrakenError. Retried as a read."""
        return self.call(method, lambda: (params, False), private=False, should_retry=retry_reads)

    def private(self, method: str, *, json_body: bool = False, **params: Any) -> dict[str, Any]:
        """POST /0/private/<method>, signed. Reads retry on any retry-safe error; anything else
        (orders, cancels) only on errors that prove nothing was executed."""
        should_retry = retry_reads if method in READ_METHODS else retry_not_placed
        return self.call(method, lambda: (params, json_body), private=True, should_retry=should_retry,
                         pair=params.get("pair"))

    def call(self, method: str, build: Callable[[], tuple[Mapping[str, Any], bool]], *, private: bool,
             should_retry: Callable[[BaseException], bool], pair: str | None = None,
             order_age: float | None = None) -> dict[str, Any]:
        """The retried unit: `build()` runs on every attempt, so each attempt has fresh parameters."""
        retrying = make_retrying(should_retry, clock=self.clock, sleep=self.pause,
                                 max_attempts=self.max_attempts, max_seconds=self.max_retry_seconds)
        return retrying(self._attempt, method, build, private, pair, order_age)

    def _attempt(self, method: str, build: Callable[[], tuple[Mapping[str, Any], bool]], private: bool,
                 pair: str | None, order_age: float | None) -> dict[str, Any]:
        self.pacer.acquire(method, private=private, pair=pair, order_age=order_age)
        params, as_json = build()
        try:
            try:
                response = (self._send_private(method, params, as_json) if private
                            else self._send_public(method, params))
            except TransportError as unanswered:
                self._unanswered(method, unanswered)
                raise
            return wire.parse_response(method, response)
        except KrakenError as exc:
            if isinstance(exc, RateLimitError):
                self.pacer.saturate(method, private=private, pair=pair)   # our mirror was behind: next attempt waits
            raise wire.redact(exc, self._secrets()) from None

    def _unanswered(self, method: str, exc: TransportError) -> None:
        outcome = ("timeout" if isinstance(exc, RequestTimeout)
                   else "connection_failed" if isinstance(exc, ConnectionFailed) else "transport_error")
        for observer in list(self.on_unanswered):
            try:
                observer(method, outcome)
            except Exception:  # an observer's bug must never change what the caller is told
                logger.debug("an on_unanswered observer failed", exc_info=True)

    def _send_public(self, method: str, params: Mapping[str, Any]) -> requests.Response:
        url = f"{self.base_url}/0/public/{method}"
        headers = {"User-Agent": self.user_agent}
        query = wire.query_params(params)
        logger.debug("GET %s", url)
        return wire.send(method, lambda: self.session.get(url, params=query, headers=headers, timeout=self.timeout))

    def _send_private(self, method: str, params: Mapping[str, Any], as_json: bool) -> requests.Response:
        if self._key is None or self._secret is None or self._lane is None:
            raise MissingCredentials("a private call needs api_key and api_secret", endpoint=method)
        path = f"/0/private/{method}"
        content_type = "application/json" if as_json else "application/x-www-form-urlencoded; charset=utf-8"
        with self._lane.lock:   # nonce order == send order
            nonce = self._lane.nonces.next()
            body = wire.encode_body(nonce, params, as_json)
            headers = {
                "User-Agent": self.user_agent, "Content-Type": content_type,
                "API-Key": self._key.reveal(), "API-Sign": sign(path, nonce, body, self._secret.reveal()),
            }
            logger.debug("POST %s nonce=%d", path, nonce)
            return wire.send(method, lambda: self.session.post(
                self.base_url + path, data=body.encode(), headers=headers, timeout=self.timeout))

    def _secrets(self) -> tuple[str, ...]:
        return tuple(s.reveal() for s in (self._key, self._secret) if s is not None)

    # --- orders -----------------------------------------------------------------------

    def add_order(self, req: OrderRequest) -> AddOrderAck:
        """Place an order at most once (idempotent by cl_ord_id; see submission.py).

        Raises an `OrderRejected` subclass when it was certainly not placed, and
        `OrderOutcomeUnknown` when look-ups could not settle it.
        """
        return self.submitter.submit(req)

    def query_orders(self, txids: Sequence[str], trades: bool = True) -> dict[str, dict]:
        """QueryOrders for any number of txids (≤ 20 per call), merged."""
        merged: dict[str, dict] = {}
        for batch in _batches(txids):
            result = self.private("QueryOrders", txid=",".join(batch), trades=trades)
            merged.update(wire.require_mapping("QueryOrders", result, "result"))
        return merged

    def open_orders(self, cl_ord_id: str | None = None) -> dict[str, dict]:
        params: dict[str, Any] = {"cl_ord_id": cl_ord_id} if cl_ord_id is not None else {}
        result = self.private("OpenOrders", **params)
        return wire.require_mapping("OpenOrders", result.get("open"), "result.open")

    def closed_orders(self, cl_ord_id: str | None = None, start: int | str | None = None,
                      ofs: int | None = None) -> dict[str, dict]:
        params: dict[str, Any] = {
            k: v for k, v in (("cl_ord_id", cl_ord_id), ("start", start), ("ofs", ofs)) if v is not None}
        result = self.private("ClosedOrders", **params)
        return wire.require_mapping("ClosedOrders", result.get("closed"), "result.closed")

    def find_order(self, cl_ord_id: str) -> tuple[str, dict] | None:
        """The order carrying `cl_ord_id`: open ones first, then the latest closed one; None if neither."""
        for fetch in (self.open_orders, self.closed_orders):
            matches = [(txid, info) for txid, info in fetch(cl_ord_id=cl_ord_id).items()
                       if info.get("cl_ord_id") == cl_ord_id]
            if matches:
                return max(matches, key=lambda m: str(m[1].get("opentm", "")))
        return None

    def cancel_order(self, txid: str | None = None, cl_ord_id: str | None = None, *,
                     pair: str | None = None, order_age: float | None = None) -> dict:
        """CancelOrder -> {count, pending}. `UnknownOrder` is raised (the order may have filled: reconcile).

        `pair` and `order_age` (seconds) let the pacer charge the right trading counter
        the right cost; unknown age is charged as the youngest (+8).
        """
        if (txid is None) == (cl_ord_id is None):
            raise ValidationError("cancel_order: give exactly one of txid or cl_ord_id")
        params = {"txid": txid} if txid is not None else {"cl_ord_id": cl_ord_id}
        return self.call("CancelOrder", lambda: (params, False), private=True, should_retry=retry_not_placed,
                         pair=self._wire_pair(pair), order_age=order_age)

    def amend_order(self, txid: str, order_qty: Decimal | None = None, limit_price: Decimal | None = None,
                    trigger_price: Decimal | None = None, *, pair: str | None = None,
                    order_age: float | None = None,
                    latest: Callable[[], Mapping[str, Decimal | None]] | None = None) -> dict:
        """AmendOrder in place (same txid, keeps fills and queue priority) -> {amend_id}.

        `order_age` (seconds) lets the pacer charge Kraken's real cost (1, more for a young order).
        `latest`: instead of fixed values, a function called right before each attempt is sent --
        after the pacer's wait -- that returns the newest fields, so a level that changed while
        the call waited for budget goes out as it is now (latest wins).
        """
        fixed = {"order_qty": order_qty, "limit_price": limit_price, "trigger_price": trigger_price}

        def build() -> tuple[dict[str, str], bool]:
            values = latest() if latest is not None else fixed
            changes = {name: wire_decimal(to_decimal(value, name)) for name, value in values.items()
                       if value is not None}
            if not changes:
                raise ValidationError("amend_order: nothing to change")
            return {"txid": txid, **changes}, False

        if latest is None:
            build()  # refuse an empty amendment before anything is paced or sent
        return self.call("AmendOrder", build, private=True, should_retry=retry_not_placed,
                         pair=self._wire_pair(pair), order_age=order_age)

    def cancel_all_orders_after(self, timeout: int) -> dict:
        """Dead man's switch: Kraken cancels ALL orders (stops included) unless re-armed; 0 disarms."""
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= 86400:
            raise ValidationError(f"timeout: must be an int of seconds in 0..86400, got {timeout!r}")
        return self.private("CancelAllOrdersAfter", timeout=timeout)

    def _wire_pair(self, pair: str | None) -> str | None:
        return self.pairs.resolve(pair).altname if pair is not None else None

    # --- account and market -----------------------------------------------------------

    def trades(self, txids: Sequence[str]) -> dict[str, dict]:
        """QueryTrades for any number of trade ids (≤ 20 per call), merged, keyed by trade id."""
        merged: dict[str, dict] = {}
        for batch in _batches(txids):
            result = self.private("QueryTrades", txid=",".join(batch))
            merged.update(wire.require_mapping("QueryTrades", result, "result"))
        return merged

    def open_positions(self, docalcs: bool = False) -> dict[str, dict]:
        result = self.private("OpenPositions", **({"docalcs": True} if docalcs else {}))
        return wire.require_mapping("OpenPositions", result, "result")

    def balances(self) -> dict[str, Decimal]:
        """Asset code (Kraken's, e.g. XXBT, ZUSD) -> total balance."""
        result = self.private("Balance")
        try:
            return {asset: to_decimal(amount, asset) for asset, amount in result.items()}
        except ValidationError as exc:
            raise MalformedResponse(f"balance not a number: {exc}", endpoint="Balance") from None

    def available_balances(self) -> dict[str, Decimal]:
        """Asset code -> what new orders may still use (BalanceEx: balance + credit - credit_used - hold_trade)."""
        result = self.private("BalanceEx")
        try:
            return {asset: (to_decimal(row.get("balance", "0"), asset) + to_decimal(row.get("credit", "0"), asset)
                            - to_decimal(row.get("credit_used", "0"), asset)
                            - to_decimal(row.get("hold_trade", "0"), asset))
                    for asset, row in result.items()}
        except (ValidationError, AttributeError) as exc:
            raise MalformedResponse(f"BalanceEx row not understood: {exc}", endpoint="BalanceEx") from None

    def ticker_price(self, symbol_or_pair: str | PairInfo) -> Decimal:
        """Last trade price (`c[0]`) of a pair, by any of its names."""
        pair = self.pairs.resolve(symbol_or_pair)
        result = self.public("Ticker", pair=pair.altname)
        entry: Any = result.get(pair.id) or result.get(pair.altname)
        if entry is None and len(result) == 1:
            entry = next(iter(result.values()))
        try:
            return to_decimal(entry["c"][0], "c[0]")
        except (TypeError, KeyError, IndexError, ValidationError):
            raise MalformedResponse(f"no last price (c[0]) for {pair.altname}", endpoint="Ticker") from None

    def get_websockets_token(self) -> str:
        """A fresh token for the private WebSocket v2 (GetWebSocketsToken; use it within 15 minutes).

        Never logged, and never echoed in an error: a result without a usable token raises
        `MalformedResponse` naming only what is wrong. A key without the "WebSocket interface"
        permission gets `PermissionDenied`.
        """
        token = self.private("GetWebSocketsToken").get("token")
        if not isinstance(token, str) or not token:
            raise MalformedResponse("result has no 'token' string", endpoint="GetWebSocketsToken")
        return token

    def system_status(self) -> str:
        """online | maintenance | cancel_only | post_only."""
        status = self.public("SystemStatus").get("status")
        if not isinstance(status, str):
            raise MalformedResponse("'status' missing", endpoint="SystemStatus")
        return status


def _check_secret(api_secret: str) -> None:
    """A secret that is not base64 would fail every signature: refuse it now, without echoing it."""
    try:
        base64.b64decode(api_secret, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValidationError("api_secret: not valid base64") from None
