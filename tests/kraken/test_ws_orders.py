"""Order entry over WebSocket v2 against the real paper exchange on a loopback socket.

The fault matrix for the WS calls (issue 12 item 8): no answer, connection lost after or
before the exchange acted, error answers, not connected. Whatever happens, an order
exists at most once at the exchange, and it is resent only after a look-up by cl_ord_id
that started past its deadline did not find it. One pacer is charged for both channels.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
import requests

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken import errors as E
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.order_request import Offset, OrderRequest
from triplegain_fsm.kraken.ratelimit import amend_cost, cancel_cost
from triplegain_fsm.kraken.stream import ExecutionStream, StreamState
from triplegain_fsm.kraken.ws_orders import OrderEntry, WsOrderEntry
from triplegain_fsm.paper import PaperExchange, ws_methods
from triplegain_fsm.paper.errors import UNAVAILABLE, KrakenRejection

pytestmark = pytest.mark.integration
D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
SETTLE = 3.0   # WsOrderEntry's default settle_seconds, as KrakenClient's


class Rig(NamedTuple):
    paper: PaperExchange
    stream: ExecutionStream
    client: KrakenClient             # REST, mounted on the same paper exchange, on the test's fake clock
    entry: WsOrderEntry


class AddOrderSpy:
    """Wraps the paper's WS add_order: records every request it receives; `script` shapes the first ones.

    "drop"    the connection drops BEFORE the exchange acts (nothing placed, no answer)
    "ignore"  the exchange does not act and answers `EService:Unavailable` (combine with
              ws_faults.unanswered_next to lose that answer too)
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.paper: Any = None            # set by make_rig
        self.received: list[dict[str, Any]] = []
        self.script: list[str] = []

    def __call__(self, ctx: Any, params: dict[str, Any]) -> Any:
        self.received.append(dict(params))
        mode = self.script.pop(0) if self.script else "act"
        if mode == "drop":
            self.paper.ws_faults.drop_now()
        if mode in ("drop", "ignore"):
            raise KrakenRejection(UNAVAILABLE)
        return self.real(ctx, params)


@pytest.fixture
def ws_adds(monkeypatch) -> AddOrderSpy:
    spy = AddOrderSpy(ws_methods.TRADING["add_order"])
    monkeypatch.setitem(ws_methods.TRADING, "add_order", spy)
    return spy


@pytest.fixture
def make_rig(make_paper, clock, kx, ws_adds) -> Iterator[Any]:
    made: list[tuple[ExecutionStream, Any]] = []

    def make(*, connect: bool = True, request_timeout: float = 2.0, **paper_kwargs: Any) -> Rig:
        paper = make_paper(**paper_kwargs)
        ws_adds.paper = paper
        server = paper.serve_ws(heartbeat_interval=kx.WS_HEARTBEAT)
        recorder = kx.StreamRecorder()
        stream = ExecutionStream(server.url, kx.TokenSource(paper), recorder.on_batch, recorder.on_state,
                                 **kx.FAST_STREAM)
        made.append((stream, server))
        if connect:
            stream.start()
            assert stream.wait_connected(5), recorder.states
        client = KrakenClient(paper.api_key, paper.api_secret, session=paper.mount(requests.Session()),
                              clock=clock, sleep=clock.sleep)
        return Rig(paper, stream, client, WsOrderEntry(stream, client, request_timeout=request_timeout))

    yield make
    for stream, server in made:
        stream.stop()
        server.shutdown()


@pytest.fixture
def rig(make_rig) -> Rig:
    return make_rig()


def order(cl: str, side: OrderSide = BUY, order_type: OrderType = OrderType.LIMIT, volume: str = "0.01",
          **kw: Any) -> OrderRequest:
    if order_type is OrderType.LIMIT:
        kw.setdefault("limit_price", D("42000"))
    return OrderRequest(pair="BTC/USD", side=side, order_type=order_type, volume=D(volume), cl_ord_id=cl, **kw)


def at_exchange(paper: PaperExchange, cl: str) -> dict[str, dict]:
    """Every order the exchange holds (open or closed) with this cl_ord_id."""
    found = {**paper.engine.open_orders(cl_ord_id=cl)["open"], **paper.engine.closed_orders(cl_ord_id=cl)["closed"]}
    return {txid: info for txid, info in found.items() if info.get("cl_ord_id") == cl}


def rest_calls(paper: PaperExchange, method: str) -> int:
    return paper.calls.count(method)


# --- every order type, placed over the socket --------------------------------------------------

@pytest.mark.parametrize(("side", "order_type", "prices", "price", "price2"), [
    (SELL, OrderType.MARKET, {}, None, None),
    (BUY, OrderType.LIMIT, {"limit_price": D("42000")}, "42000", None),
    (SELL, OrderType.STOP_LOSS, {"trigger_price": D("41000")}, "41000", None),
    (SELL, OrderType.TAKE_PROFIT, {"trigger_price": D("45000")}, "45000", None),
    (SELL, OrderType.STOP_LOSS_LIMIT, {"trigger_price": D("41000"), "limit_price": D("40900.5")}, "41000", "40900.5"),
    (SELL, OrderType.TAKE_PROFIT_LIMIT, {"trigger_price": D("45000"), "limit_price": D("44900")}, "45000", "44900"),
])
def test_each_order_type_goes_over_the_socket_with_trigger_and_limit_in_place(rig, ws_adds, side, order_type,
                                                                             prices, price, price2):
    cl = f"t-{order_type.value}"[:18]
    ack = rig.entry.add_order(OrderRequest(pair="BTC/USD", side=side, order_type=order_type, volume=D("0.01"),
                                           cl_ord_id=cl, **prices))
    assert ack.txid is not None and not ack.recovered and ack.description.startswith(f"{side.value} 0.01 BTC/USD")
    [sent] = ws_adds.received
    assert sent["symbol"] == "BTC/USD" and sent["fee_preference"] == "quote" and sent["deadline"].endswith("Z")
    held = rig.paper.order(ack.txid)      # the engine's order, in Kraken's REST shape (trigger in price)
    assert held["cl_ord_id"] == cl and held["descr"]["ordertype"] == order_type.value
    assert D(held["vol"]) == D("0.01") and "fciq" in held["oflags"].split(",")
    assert D(held["descr"]["price"]) == D(price or "0") and D(held["descr"]["price2"]) == D(price2 or "0")
    assert rest_calls(rig.paper, "AddOrder") == 0 and list(at_exchange(rig.paper, cl)) == [ack.txid]


def test_margin_at_the_pairs_maximum_goes_by_ws_and_below_it_by_rest(make_rig, ws_adds):
    rig = make_rig(account="margin")
    top = rig.entry.add_order(order("m-top", BUY, OrderType.MARKET, leverage=5))
    assert len(ws_adds.received) == 1 and ws_adds.received[0]["margin"] is True
    assert rig.paper.order(top.txid)["descr"]["leverage"] == "5:1"
    below = rig.entry.add_order(order("m-below", BUY, OrderType.MARKET, leverage=3))
    assert len(ws_adds.received) == 1 and rest_calls(rig.paper, "AddOrder") == 1
    assert rig.paper.order(below.txid)["descr"]["leverage"] == "3:1"
    assert [len(at_exchange(rig.paper, cl)) for cl in ("m-top", "m-below")] == [1, 1]


def test_a_trailing_stop_goes_by_rest(rig, ws_adds):
    ack = rig.entry.add_order(order("trail-1", SELL, OrderType.TRAILING_STOP, trailing_offset=Offset(D("500"))))
    assert ws_adds.received == [] and rest_calls(rig.paper, "AddOrder") == 1
    assert rig.paper.order(ack.txid)["descr"]["price"].startswith("+500")


# --- the fault matrix --------------------------------------------------------------------------

def test_no_answer_is_settled_by_cl_ord_id_found_and_never_sent_twice(make_rig, ws_adds, clock):
    rig = make_rig(request_timeout=0.3)
    rig.paper.ws_faults.unanswered_next("add_order")
    ack = rig.entry.add_order(order("quiet-1", SELL, OrderType.MARKET))
    assert ack.recovered and list(at_exchange(rig.paper, "quiet-1")) == [ack.txid]
    assert len(ws_adds.received) == 1 and rest_calls(rig.paper, "AddOrder") == 0
    assert rest_calls(rig.paper, "OpenOrders") >= 1                   # looked up by REST


def test_connection_lost_after_the_exchange_acted_is_recovered(rig, ws_adds):
    rig.paper.ws_faults.drop_after_next("add_order")
    ack = rig.entry.add_order(order("lost-after"))
    assert ack.recovered and list(at_exchange(rig.paper, "lost-after")) == [ack.txid]
    assert rig.paper.order(ack.txid)["status"] == "open"
    assert len(ws_adds.received) == 1 and rest_calls(rig.paper, "AddOrder") == 0


def test_connection_lost_before_the_exchange_acted_is_resent_once_after_the_deadline(rig, ws_adds, clock):
    ws_adds.script = ["drop"]
    ack = rig.entry.add_order(order("lost-before"))
    assert not ack.recovered and list(at_exchange(rig.paper, "lost-before")) == [ack.txid]
    first_deadline = datetime.fromisoformat(ws_adds.received[0]["deadline"].replace("Z", "+00:00")).timestamp()
    # the resend went by whichever channel was up at that moment (the stream reconnects meanwhile)
    resends = ws_adds.received[1:] + [c.params for c in rig.paper.calls.of("AddOrder")]
    assert len(resends) == 1 and resends[0]["cl_ord_id"] == "lost-before"
    lookups = rig.paper.calls.of("ClosedOrders")
    assert lookups and clock.now >= first_deadline + SETTLE   # settled past the deadline
    second_deadline = datetime.fromisoformat(resends[0]["deadline"].replace("Z", "+00:00")).timestamp()
    assert second_deadline > first_deadline + SETTLE


def test_no_answer_and_not_acted_is_resent_once_on_the_socket(make_rig, ws_adds):
    rig = make_rig(request_timeout=0.3)
    ws_adds.script = ["ignore"]
    rig.paper.ws_faults.unanswered_next("add_order")
    ack = rig.entry.add_order(order("gone-1"))
    assert not ack.recovered and list(at_exchange(rig.paper, "gone-1")) == [ack.txid]
    assert [p["cl_ord_id"] for p in ws_adds.received] == ["gone-1", "gone-1"]
    assert rest_calls(rig.paper, "AddOrder") == 0 and rest_calls(rig.paper, "ClosedOrders") >= 1


def test_an_outcome_unknown_error_answer_is_looked_up_before_the_resend(rig, ws_adds):
    ws_adds.script = ["ignore"]                                        # answered EService:Unavailable
    ack = rig.entry.add_order(order("busy-1"))
    assert not ack.recovered and len(ws_adds.received) == 2 and rest_calls(rig.paper, "OpenOrders") >= 1
    assert list(at_exchange(rig.paper, "busy-1")) == [ack.txid]


def test_look_ups_that_keep_failing_leave_the_order_unknown(make_rig, ws_adds):
    rig = make_rig(request_timeout=0.3)
    rig.paper.ws_faults.unanswered_next("add_order")
    rig.paper.faults.http_status_next("OpenOrders", 503, times=50)
    with pytest.raises(E.OrderOutcomeUnknown):
        rig.entry.add_order(order("dark-1"))
    assert len(ws_adds.received) == 1 and rest_calls(rig.paper, "AddOrder") == 0   # never resent
    assert len(at_exchange(rig.paper, "dark-1")) == 1                              # it did arrive


@pytest.mark.parametrize(("req", "market", "cls"), [
    (order("poor-1", volume="50"), "online", E.InsufficientFunds),
    (order("tiny-1", volume="0.00001"), "online", E.OrderMinimumNotMet),
    (order("closed-1"), "cancel_only", E.MarketCancelOnly),
])
def test_an_error_answer_raises_its_class_and_nothing_is_placed(rig, ws_adds, req, market, cls):
    rig.paper.set_pair_status("XBTUSD", market)
    with pytest.raises(cls) as raised:
        rig.entry.add_order(req)
    assert raised.value.order_not_placed and "ws add_order" in str(raised.value)
    assert at_exchange(rig.paper, req.cl_ord_id) == {} and len(ws_adds.received) == 1
    assert rest_calls(rig.paper, "AddOrder") == 0 and rest_calls(rig.paper, "OpenOrders") == 0


def test_not_connected_falls_back_to_rest_with_the_same_cl_ord_id(make_rig, ws_adds):
    rig = make_rig(connect=False)
    assert rig.stream.state is StreamState.OFF
    ack = rig.entry.add_order(order("rest-1"))
    [call] = rig.paper.calls.of("AddOrder")
    assert call.params["cl_ord_id"] == "rest-1" and ws_adds.received == []
    assert list(at_exchange(rig.paper, "rest-1")) == [ack.txid] and not ack.recovered
    assert rig.client.pacer.trading("XBTUSD").available() == rig.client.pacer.tier.trading_max - 1   # charged once
    assert set(rig.entry.amend_order(ack.txid, limit_price=D("41000"), pair="BTC/USD")) == {"amend_id"}
    assert rig.entry.cancel_order(txid=ack.txid, pair="BTC/USD")["count"] == 1
    assert [rest_calls(rig.paper, m) for m in ("AmendOrder", "CancelOrder")] == [1, 1]
    assert "currentTime" in rig.entry.cancel_all_orders_after(0)


class RefusingSocket:
    """Says connected, then refuses to send (the stream dropped between the check and the send)."""

    state = StreamState.CONNECTED

    def __init__(self, error: E.KrakenError) -> None:
        self.error = error

    def request(self, method: str, params: Any, timeout: float) -> dict[str, Any]:
        raise self.error


@pytest.mark.parametrize("error", [E.StreamNotConnected("stream down: NOT sent"),
                                   E.InvalidWsToken(raw=["EAPI:Invalid token"])])
def test_refused_before_sending_goes_by_rest_at_once(make_rig, error):
    rig = make_rig(connect=False)
    entry = WsOrderEntry(RefusingSocket(error), rig.client)
    ack = entry.add_order(order("race-1"))
    assert rest_calls(rig.paper, "AddOrder") == 1 and list(at_exchange(rig.paper, "race-1")) == [ack.txid]
    assert rest_calls(rig.paper, "OpenOrders") == 0                   # nothing unknown: no look-up
    entry.cancel_order(txid=ack.txid, pair="XBTUSD", order_age=400)
    assert rig.paper.order(ack.txid)["status"] == "canceled"


def test_an_invalidated_token_sends_the_order_by_rest(rig, ws_adds):
    rig.paper.invalidate_ws_tokens()
    ack = rig.entry.add_order(order("tok-1"))
    assert ws_adds.received == [] and rest_calls(rig.paper, "AddOrder") == 1
    assert list(at_exchange(rig.paper, "tok-1")) == [ack.txid]


class RateLimitedOnce:
    """The socket refuses the first request for pace (`EOrder:Rate limit exceeded`), then passes them on."""

    def __init__(self, stream: ExecutionStream) -> None:
        self.stream, self.refused = stream, 0

    @property
    def state(self) -> StreamState:
        return self.stream.state

    def request(self, method: str, params: Any, timeout: float) -> dict[str, Any]:
        if not self.refused:
            self.refused += 1
            raise E.TradingRateLimitExceeded(raw=["EOrder:Rate limit exceeded"], endpoint=f"ws {method}")
        return self.stream.request(method, params, timeout)


def test_a_rate_limit_answer_saturates_the_shared_counter_and_is_retried(rig, ws_adds, clock):
    entry = WsOrderEntry(RateLimitedOnce(rig.stream), rig.client)
    ack = entry.add_order(order("pace-1"))
    assert not ack.recovered and len(ws_adds.received) == 1 and list(at_exchange(rig.paper, "pace-1")) == [ack.txid]
    assert clock.sleeps and rest_calls(rig.paper, "OpenOrders") == 0   # waited for the counter, no look-up


# --- one pacer for both channels ---------------------------------------------------------------

def test_each_request_charges_the_shared_trading_counter_once(rig, clock):
    counter = rig.client.pacer.trading("XBTUSD")
    full = counter.available()
    ws = rig.entry.add_order(order("pace-ws"))
    assert counter.available() == full - 1
    rig.client.add_order(order("pace-rest", limit_price=D("41000")))   # REST draws from the same counter
    assert counter.available() == full - 2
    rig.entry.amend_order(ws.txid, limit_price=D("41500"), pair="BTC/USD", order_age=100)
    assert counter.available() == full - 2 - amend_cost(100)
    rig.entry.cancel_order(txid=ws.txid, pair="BTC/USD")              # age unknown: charged as the youngest
    assert counter.available() == full - 2 - amend_cost(100) - cancel_cost(None)
    rig.entry.cancel_all_orders_after(60)
    assert counter.available() == full - 2 - amend_cost(100) - cancel_cost(None)
    assert clock.sleeps == []                                          # nothing decayed: the figures are exact


# --- amend and cancel --------------------------------------------------------------------------

def test_amend_and_cancel_over_the_socket_answer_in_rest_shapes(rig):
    ack = rig.entry.add_order(order("am-1", SELL, OrderType.STOP_LOSS_LIMIT, trigger_price=D("41000"),
                                    limit_price=D("40900")))
    amended = rig.entry.amend_order(ack.txid, trigger_price=D("41500.5"), limit_price=D("41400"), pair="BTC/USD",
                                    order_age=30)
    assert set(amended) == {"amend_id"}
    descr = rig.paper.order(ack.txid)["descr"]
    assert (D(descr["price"]), D(descr["price2"])) == (D("41500.5"), D("41400"))   # trigger stays the trigger
    levels = iter([D("41600"), D("41700")])
    rig.entry.amend_order(ack.txid, pair="BTC/USD", latest=lambda: {"trigger_price": next(levels),
                                                                    "limit_price": None})
    assert D(rig.paper.order(ack.txid)["descr"]["price"]) == D("41600")
    assert rig.entry.cancel_order(txid=ack.txid, pair="BTC/USD", order_age=30) == {"count": 1, "pending": False}
    assert rig.paper.order(ack.txid)["status"] == "canceled"
    with pytest.raises(E.UnknownOrder):
        rig.entry.cancel_order(txid=ack.txid, pair="BTC/USD")
    by_cl = rig.entry.add_order(order("am-2"))
    assert rig.entry.cancel_order(cl_ord_id="am-2", pair="BTC/USD")["count"] == 1
    assert rig.paper.order(by_cl.txid)["status"] == "canceled"
    assert [rest_calls(rig.paper, m) for m in ("AddOrder", "AmendOrder", "CancelOrder")] == [0, 0, 0]


def test_amend_refuses_an_empty_change_before_anything_is_sent(rig):
    with pytest.raises(ValidationError):
        rig.entry.amend_order("OAAAAA-BBBBB-CCCCCC", pair="BTC/USD")
    assert rig.client.pacer.trading("XBTUSD").available() == rig.client.pacer.tier.trading_max


def test_an_amend_without_answer_is_outcome_unknown_not_resent(make_rig):
    rig = make_rig(request_timeout=0.3)
    ack = rig.entry.add_order(order("am-q"))
    rig.paper.ws_faults.unanswered_next("amend_order")
    with pytest.raises(E.RequestTimeout) as raised:
        rig.entry.amend_order(ack.txid, limit_price=D("41000"), pair="BTC/USD")
    assert raised.value.outcome_unknown and rest_calls(rig.paper, "AmendOrder") == 0


def test_dead_mans_switch_over_the_socket_and_by_rest_when_unanswered(make_rig):
    rig = make_rig(request_timeout=0.3)
    armed = rig.entry.cancel_all_orders_after(60)
    assert {"currentTime", "triggerTime"} <= set(armed) and rest_calls(rig.paper, "CancelAllOrdersAfter") == 0
    rig.paper.ws_faults.unanswered_next("cancel_all_orders_after")
    assert "triggerTime" in rig.entry.cancel_all_orders_after(60)
    assert rest_calls(rig.paper, "CancelAllOrdersAfter") == 1          # re-armed by REST: idempotent


def test_the_socket_entry_has_the_rest_clients_calls():
    entries: list[type[OrderEntry]] = [KrakenClient, WsOrderEntry]  # type: ignore[type-abstract]
    for name in ("add_order", "amend_order", "cancel_order", "cancel_all_orders_after"):
        shapes = [[(p.name, p.kind, p.default) for p in inspect.signature(getattr(e, name)).parameters.values()]
                  for e in entries]
        assert shapes[0] == shapes[1], name
