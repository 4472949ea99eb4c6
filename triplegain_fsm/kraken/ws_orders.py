"""Order entry over Kraken's WebSocket v2, with exactly the REST client's calls, answers and guarantees.

    entry = WsOrderEntry(stream, client)          # the stream's socket, the REST client
    ack = entry.add_order(req)                    # AddOrderAck, as client.add_order
    entry.amend_order(txid, limit_price=..., pair="XBTUSD", order_age=12.0)    # {amend_id}
    entry.cancel_order(txid=txid, pair="XBTUSD", order_age=12.0)              # {count, pending}
    entry.cancel_all_orders_after(60)            # {currentTime, triggerTime}

`WsOrderEntry` and `KrakenClient` both satisfy `OrderEntry`, so the core holds one
and calls it without knowing the channel.

Rules (issue 12 item 6):
- One pacer. Each request charges the client's own pacer (`client.pacer`) exactly what
  the REST call would: AddOrder 1, AmendOrder / CancelOrder by the order's age, on the
  pair's trading counter (Kraken's counter is shared by REST, WS and FIX). A rate-limit
  refusal saturates that counter, and not-placed refusals are retried like REST's.
- Never twice. `add_order` runs the submitter's loop (`submission.OrderSubmitter`) with
  a WS sender: an answer that does not come in time (`RequestTimeout`), a connection
  lost after sending (`ConnectionFailed`), an outcome-unknown error answer or a
  malformed answer are settled by cl_ord_id through REST look-ups, exactly like a REST
  timeout; the order is resent (on whichever channel is up) only after a look-up that
  started past its deadline did not find it.
- Not sent = REST. The stream refusing before sending (`StreamNotConnected`) or the
  token being refused (`InvalidWsToken`) proves nothing left for the exchange, so that
  same submission goes by REST at once (same cl_ord_id, same submission count).
  When the stream is already known to be down, REST is used without charging the
  pacer for the socket; only the rare race (it drops between the check and the send)
  charges both, which errs on the slow side.
- Orders WS cannot say (`ws_params.RestOnlyOrder`: leverage below the pair's maximum,
  trailing stops, volume 0) go by REST from the start.
- Error answers are raised through the one table (`errors.classify`, done by the stream).
- Amend and cancel are not settled by look-up (REST does not either): an unknown outcome
  is raised for the caller to reconcile, as `KrakenClient` does. `cancel_all_orders_after`
  only re-arms a timer, so an unknown outcome there is repeated by REST.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.errors import (
    InvalidWsToken,
    KrakenError,
    MalformedResponse,
    RateLimitError,
    StreamNotConnected,
)
from triplegain_fsm.kraken.order_request import OrderRequest
from triplegain_fsm.kraken.retry import make_retrying, retry_not_placed
from triplegain_fsm.kraken.stream_session import StreamState
from triplegain_fsm.kraken.submission import AddOrderAck, Attempt, OrderSubmitter
from triplegain_fsm.kraken.ws_params import (
    RestOnlyOrder,
    add_order_ws_params,
    amend_order_ws_params,
    cancel_all_orders_after_ws_params,
    cancel_order_ws_params,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
NOT_SENT = (StreamNotConnected, InvalidWsToken)   # refused before the exchange could act: REST may carry it
Latest = Callable[[], Mapping[str, Decimal | None]]


class OrderEntry(Protocol):
    """What the core calls to place, amend and cancel: `KrakenClient` (REST) or `WsOrderEntry`."""

    def add_order(self, req: OrderRequest) -> AddOrderAck: ...

    def amend_order(self, txid: str, order_qty: Decimal | None = None, limit_price: Decimal | None = None,
                    trigger_price: Decimal | None = None, *, pair: str | None = None,
                    order_age: float | None = None, latest: Latest | None = None) -> dict: ...

    def cancel_order(self, txid: str | None = None, cl_ord_id: str | None = None, *,
                     pair: str | None = None, order_age: float | None = None) -> dict: ...

    def cancel_all_orders_after(self, timeout: int) -> dict: ...


class TradingSocket(Protocol):
    """The part of `stream.ExecutionStream` order entry uses."""

    @property
    def state(self) -> StreamState: ...

    def request(self, method: str, params: Mapping[str, Any], timeout: float) -> dict[str, Any]: ...


def _retry_on_socket(exc: BaseException) -> bool:
    """REST's rule (only answers proving nothing was executed), minus those that send us to REST instead."""
    return retry_not_placed(exc) and not isinstance(exc, NOT_SENT)


class WsOrderEntry:
    """`KrakenClient`'s order calls, sent on the stream's socket. Thread-safe as the stream and client are.

    The submitter settings mean what they mean on `KrakenClient` (give the same values).
    """

    def __init__(self, stream: TradingSocket, client: KrakenClient, *, request_timeout: float = 5.0,
                 submitter: OrderSubmitter | None = None) -> None:
        """`submitter`: the look-up/resend policy; by default the REST client's own, so both channels
        settle an unknown outcome with the same deadline, margin and limits."""
        if request_timeout <= 0:
            raise ValueError(f"request_timeout: seconds > 0, got {request_timeout}")
        self._stream, self._client = stream, client
        self.request_timeout = request_timeout
        self._submitter = submitter if submitter is not None else client.submitter

    def __repr__(self) -> str:
        return f"WsOrderEntry(stream={self._stream!r}, client={self._client!r})"

    # --- add ---------------------------------------------------------------------------

    def add_order(self, req: OrderRequest) -> AddOrderAck:
        """Place an order at most once (see the module docstring); raises as `KrakenClient.add_order`."""
        pair = self._client.pairs.resolve(req.pair)
        try:
            add_order_ws_params(req, pair)       # refuses a bad request, or says it is REST's
        except RestOnlyOrder as exc:
            log.info("AddOrder %s goes by REST: %s", req.cl_ord_id, exc)
            return self._client.add_order(req)
        return self._submitter.submit(req, send=self._send_add)

    def _send_add(self, attempt: Attempt) -> AddOrderAck:
        """One submission: on the socket when it is up, else (nothing sent) by REST."""
        if not self._connected():
            return self._by_rest(attempt, f"stream {self._stream.state.value}")
        try:
            return self._paced("AddOrder", attempt.pair.altname, None, lambda: self._ws_add(attempt))
        except NOT_SENT as exc:
            return self._by_rest(attempt, str(exc))

    def _ws_add(self, attempt: Attempt) -> AddOrderAck:
        req = attempt.stamped()                  # after the pacer's wait: the deadline starts now
        params = add_order_ws_params(req, attempt.pair)
        result = self._stream.request("add_order", params, self.request_timeout)
        return ws_ack(result, params)

    def _by_rest(self, attempt: Attempt, why: str) -> AddOrderAck:
        log.warning("AddOrder %s: not sent on the WebSocket (%s); sending it by REST", attempt.request.cl_ord_id, why)
        return self._submitter.send_rest(attempt)

    # --- amend, cancel -----------------------------------------------------------------

    def amend_order(self, txid: str, order_qty: Decimal | None = None, limit_price: Decimal | None = None,
                    trigger_price: Decimal | None = None, *, pair: str | None = None,
                    order_age: float | None = None, latest: Latest | None = None) -> dict:
        """As `KrakenClient.amend_order` -> {amend_id}; `latest` is read right before each send."""
        fixed: Mapping[str, Decimal | None] = {"order_qty": order_qty, "limit_price": limit_price,
                                               "trigger_price": trigger_price}
        if latest is None:
            amend_order_ws_params(txid, order_qty, limit_price, trigger_price)   # refuse an empty amendment now

        def by_rest() -> dict:
            return self._client.amend_order(txid, order_qty, limit_price, trigger_price, pair=pair,
                                            order_age=order_age, latest=latest)

        def send() -> dict[str, Any]:
            values = latest() if latest is not None else fixed
            params = amend_order_ws_params(txid, values.get("order_qty"), values.get("limit_price"),
                                           values.get("trigger_price"))
            return self._stream.request("amend_order", params, self.request_timeout)

        result = self._on_socket("AmendOrder", pair, order_age, send)
        if result is None:
            return by_rest()
        amend_id = result.get("amend_id")
        if not isinstance(amend_id, str) or not amend_id:
            raise MalformedResponse("'amend_id' missing", endpoint="ws amend_order")
        return {"amend_id": amend_id}

    def cancel_order(self, txid: str | None = None, cl_ord_id: str | None = None, *,
                     pair: str | None = None, order_age: float | None = None) -> dict:
        """As `KrakenClient.cancel_order` -> {count, pending}; `UnknownOrder` when it is not open (reconcile)."""
        params = cancel_order_ws_params(order_id=txid, cl_ord_id=cl_ord_id)

        def by_rest() -> dict:
            return self._client.cancel_order(txid, cl_ord_id, pair=pair, order_age=order_age)

        def send() -> dict[str, Any]:
            return self._stream.request("cancel_order", params, self.request_timeout)

        if self._on_socket("CancelOrder", pair, order_age, send) is None:
            return by_rest()
        return {"count": 1, "pending": False}     # one order named, one success answer (routed by req_id)

    def cancel_all_orders_after(self, timeout: int) -> dict:
        """Arm (or with 0 disarm) the dead man's switch; an unknown outcome is re-armed by REST (idempotent)."""
        params = cancel_all_orders_after_ws_params(timeout)
        if self._connected():
            try:
                return self._paced("CancelAllOrdersAfter", None, None, lambda: self._stream.request(
                    "cancel_all_orders_after", params, self.request_timeout))
            except KrakenError as exc:
                if not (isinstance(exc, NOT_SENT) or exc.outcome_unknown):
                    raise
                log.warning("cancel_all_orders_after(%d) on the WebSocket: %s; arming it by REST", timeout, exc)
        return self._client.cancel_all_orders_after(timeout)

    # --- shared ------------------------------------------------------------------------

    def _connected(self) -> bool:
        return self._stream.state is StreamState.CONNECTED

    def _on_socket(self, method: str, pair: str | None, order_age: float | None,
                   send: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """`send` paced as REST's `method`; None when it was not sent on the socket (the caller uses REST)."""
        if not self._connected():
            return None
        wire_pair = self._client.pairs.resolve(pair).altname if pair is not None else None
        try:
            return self._paced(method, wire_pair, order_age, send)
        except NOT_SENT as exc:
            log.warning("%s on the WebSocket not sent (%s); sending it by REST", method, exc)
            return None

    def _paced(self, method: str, pair: str | None, order_age: float | None, send: Callable[[], T]) -> T:
        """Charge the client's pacer what REST `method` costs, then send; not-placed refusals retried as REST's."""
        pacer = self._client.pacer

        def attempt() -> T:
            pacer.acquire(method, private=True, pair=pair, order_age=order_age)
            try:
                return send()
            except RateLimitError:
                pacer.saturate(method, private=True, pair=pair)   # our mirror was behind: the next attempt waits
                raise

        retrying = make_retrying(_retry_on_socket, clock=self._client.clock, sleep=self._client.pause,
                                 max_attempts=self._client.max_attempts, max_seconds=self._client.max_retry_seconds)
        return retrying(attempt)


def ws_ack(result: Mapping[str, Any], params: Mapping[str, Any]) -> AddOrderAck:
    """The `add_order` answer as REST's ack; an answer without a usable order_id is outcome unknown."""
    description = ws_description(params)
    if params.get("validate"):
        return AddOrderAck(txid=None, description=description)
    order_id = result.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise MalformedResponse("'order_id' missing", endpoint="ws add_order")
    if result.get("cl_ord_id") not in (None, params["cl_ord_id"]):
        raise MalformedResponse(f"the answer is for cl_ord_id {result.get('cl_ord_id')!r}, not "
                                f"{params['cl_ord_id']!r}", endpoint="ws add_order")
    return AddOrderAck(txid=order_id, description=description)


def ws_description(params: Mapping[str, Any]) -> str:
    """What was placed, in the spirit of REST's `descr.order` (WS answers carry none):
    `sell 1.25 BTC/USD @ stop-loss-limit 40000 -> limit 39900`."""
    qty = params.get("order_qty", params.get("cash_order_qty"))
    text = f"{params['side']} {qty} {params['symbol']} @ {params['order_type']}"
    trigger = params.get("triggers", {}).get("price")
    limit = params.get("limit_price")
    if trigger is not None:
        text += f" {trigger}"
    if limit is not None:
        text += f" -> limit {limit}" if trigger is not None else f" {limit}"
    return text + (" with margin" if params.get("margin") else "")
