"""The paper exchange's WebSocket v2, over a real loopback socket: connection, tokens, the
executions channel (snapshot, sparse updates, sequence, heartbeats) and REST/WS agreement."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from triplegain_fsm.paper import PaperExchange
from triplegain_fsm.paper.params import parse_add_order
from triplegain_fsm.paper.ws_json import dumps, loads
from triplegain_fsm.paper.ws_probe import WsProbe

pytestmark = pytest.mark.integration
HEARTBEAT = 0.05


@pytest.fixture
def open_probe(exchange, ws_server):
    probes: list[WsProbe] = []

    def make(ex: PaperExchange | None = None, server=None) -> WsProbe:
        target = ex or exchange
        probe = WsProbe((server or ws_server).url, target.ws_tokens.issue()["token"])
        assert probe.recv()["channel"] == "status"
        probes.append(probe)
        return probe
    yield make
    for probe in probes:
        probe.close()


@pytest.fixture
def probe(open_probe) -> WsProbe:
    return open_probe()


def limit_buy(probe: WsProbe, price: str = "42000", qty: str = "0.01", **extra) -> dict:
    answer = probe.request("add_order", {"order_type": "limit", "side": "buy", "order_qty": Decimal(qty),
                                         "symbol": "BTC/USD", "limit_price": Decimal(price), **extra})
    assert answer["success"] is True, answer
    return answer


def reports(probe: WsProbe) -> list[dict]:
    return probe.executions()["data"]


# -- connection -------------------------------------------------------------------------------------


def test_connect_sends_status_then_ping_is_answered_with_pong(exchange, ws_server):
    assert ws_server.url.startswith("ws://127.0.0.1:") and ws_server.url.endswith("/v2")
    with WsProbe(ws_server.url) as probe:
        status = probe.recv()
        assert status["channel"] == "status" and status["type"] == "update"
        assert status["data"][0]["system"] == "online" and status["data"][0]["api_version"] == "v2"
        pong = probe.request("ping", req_id=7, token=False)
        assert pong["method"] == "pong" and pong["req_id"] == 7 and "time_in" in pong and "time_out" in pong


def test_only_the_v2_path_is_served(ws_server):
    with pytest.raises(InvalidStatus) as raised:
        connect(ws_server.url.replace("/v2", "/v1"), open_timeout=2)
    assert raised.value.response.status_code == 404


def test_get_websockets_token_over_signed_rest_opens_a_subscription(exchange, client, ws_server):
    result = client.ok("GetWebSocketsToken")
    assert result["expires"] == 900 and len(result["token"]) > 20
    assert client.ok("GetWebSocketsToken")["token"] != result["token"]   # random, one per call
    with WsProbe(ws_server.url, result["token"]) as probe:
        probe.recv()
        ack, snapshot = probe.subscribe()
        assert ack["success"] is True and snapshot is not None


def test_get_websockets_token_needs_a_signature(exchange):
    session = requests.Session()
    exchange.mount(session)
    answer = session.post("https://api.kraken.com/0/private/GetWebSocketsToken", data={"nonce": "1"}).json()
    assert answer["error"] == ["EAPI:Invalid key"]


def test_every_private_request_needs_a_valid_token(exchange, probe):
    missing = probe.request("subscribe", {"channel": "executions"}, token=False)
    assert missing["success"] is False and missing["error"] == "EAPI:Invalid token"
    forged = probe.request("add_order", {"order_type": "market", "side": "buy", "order_qty": Decimal("0.01"),
                                         "symbol": "BTC/USD", "token": "forged"}, token=False)
    assert forged["error"] == "EAPI:Invalid token" and forged["method"] == "add_order"
    assert probe.request("cancel_all", token=False)["error"] == "EAPI:Invalid token"
    assert exchange.open_orders() == {} and exchange.trades() == {}


def test_token_unused_for_15_minutes_expires(exchange, clock, ws_server):
    token = exchange.ws_tokens.issue()["token"]
    clock.advance(901)
    with WsProbe(ws_server.url, token) as probe:
        probe.recv()
        assert probe.subscribe()[0]["error"] == "EAPI:Invalid token"


def test_malformed_requests_are_answered_without_crashing_the_connection(probe):
    probe.ws.send("not json")
    assert probe.recv() == {**probe.seen[-1], "error": "EGeneral:Invalid arguments", "success": False}
    assert probe.request("no_such_method")["error"] == "EGeneral:Unknown method"
    assert probe.request("subscribe", {"channel": "book"})["error"] == "EGeneral:Invalid arguments:channel"
    assert probe.request("ping", req_id=99, token=False)["method"] == "pong"


# -- the executions channel -----------------------------------------------------------------------


def test_subscribe_ack_then_snapshot_of_open_orders_and_trades(exchange, place, probe):
    resting = place(type="buy", ordertype="limit", price="42000", volume="0.02", cl_ord_id="rest-1")
    stop = place(type="sell", ordertype="stop-loss-limit", price="40000", price2="39900", volume="0.5")
    filled = place(type="buy", ordertype="market", volume="0.01")
    ack, snapshot = probe.subscribe(snap_orders=True, snap_trades=True, req_id=1)
    assert ack["method"] == "subscribe" and ack["success"] is True
    assert ack["result"] == {"channel": "executions", "maxratecount": 180, "snapshot": True}
    assert snapshot["type"] == "snapshot" and snapshot["sequence"] == 1
    by_id = {r["order_id"]: r for r in snapshot["data"] if r["exec_type"] == "new"}
    assert set(by_id) == {resting, stop}
    assert by_id[resting] | {"timestamp": None} == {
        "exec_type": "new", "order_status": "new", "order_id": resting, "symbol": "BTC/USD", "side": "buy",
        "order_type": "limit", "order_qty": Decimal("0.02"), "limit_price": 42000, "limit_price_type": "static",
        "cl_ord_id": "rest-1", "time_in_force": "gtc", "post_only": False, "reduce_only": False, "margin": False,
        "cum_qty": 0, "cum_cost": 0, "avg_price": 0, "fee_usd_equiv": 0, "timestamp": None}
    assert by_id[stop]["triggers"] == {"reference": "last", "status": "untriggered", "price": 40000,
                                       "price_type": "static", "actual_price": 40000}
    assert by_id[stop]["limit_price"] == Decimal("39900")
    [trade] = [r for r in snapshot["data"] if r["exec_type"] == "trade"]
    assert trade["order_id"] == filled and trade["order_status"] == "filled"
    assert trade["exec_id"] in exchange.trades() and trade["last_price"] == 43000


def test_snapshot_holds_at_most_the_last_50_trades(exchange, place, probe):
    for _ in range(55):
        place(type="buy", ordertype="market", volume="0.001")
    _, snapshot = probe.subscribe(snap_orders=False, snap_trades=True)
    exec_ids = [r["exec_id"] for r in snapshot["data"]]
    assert exec_ids == list(exchange.trades())[-50:]


def test_partial_fills_from_ticks_are_sparse_with_cumulative_figures(make_exchange, open_probe):
    exchange = make_exchange(liquidity_per_tick="0.004")
    server = exchange.serve_ws(heartbeat_interval=HEARTBEAT)
    try:
        probe = open_probe(exchange, server)
        probe.subscribe()
        order_id = limit_buy(probe, qty="0.01")["result"]["order_id"]
        pending, new = reports(probe)
        assert pending["exec_type"] == "pending_new" and pending["symbol"] == "BTC/USD"
        assert new == {"exec_type": "new", "order_status": "new", "order_id": order_id,
                       "timestamp": new["timestamp"]}
        exchange.set_price("BTC/USD", "41900")
        exchange.set_price("BTC/USD", "41950")
        first, second = reports(probe), reports(probe)
        for frame, cum in ((first, "0.004"), (second, "0.008")):
            [trade] = frame
            assert trade["exec_type"] == "trade" and trade["order_status"] == "partially_filled"
            assert "symbol" not in trade and "cl_ord_id" not in trade and "side" not in trade     # sparse
            assert trade["last_qty"] == Decimal("0.004") and trade["last_price"] == 42000
            assert trade["liquidity_ind"] == "m" and trade["cum_qty"] == Decimal(cum)
            assert trade["cum_cost"] == Decimal(cum) * 42000 and trade["avg_price"] == 42000
            assert trade["fees"] == [{"asset": "USD", "qty": Decimal("0.2688")}]
        assert first[0]["trade_id"] != second[0]["trade_id"] and first[0]["exec_id"] != second[0]["exec_id"]
        assert {first[0]["exec_id"], second[0]["exec_id"]} <= set(exchange.trades())
        sequences = [m["sequence"] for m in probe.seen if m.get("channel") == "executions"]
        assert sequences == [1, 2, 3, 4]
    finally:
        server.shutdown()


def test_the_completing_trade_says_partially_filled_then_a_filled_report_follows(exchange, probe):
    probe.subscribe()
    order_id = limit_buy(probe)["result"]["order_id"]
    reports(probe)
    exchange.set_price("BTC/USD", "41000")
    trade, filled = reports(probe)
    assert trade["exec_type"] == "trade" and trade["order_status"] == "partially_filled"   # Kraken's quirk
    assert trade["cum_qty"] == Decimal("0.01") and "exec_id" in trade
    assert filled["exec_type"] == "filled" and filled["order_status"] == "filled" and "exec_id" not in filled
    assert filled["order_id"] == order_id and filled["cum_qty"] == Decimal("0.01") and filled["avg_price"] == 42000
    assert exchange.order(order_id)["status"] == "closed"


def test_the_quirk_can_be_switched_off(exchange, open_probe):
    server = exchange.serve_ws(heartbeat_interval=HEARTBEAT, completing_trade_status="filled")
    try:
        probe = open_probe(server=server)
        probe.subscribe()
        probe.request("add_order", {"order_type": "market", "side": "buy", "order_qty": Decimal("0.01"),
                                    "symbol": "BTC/USD"})
        kinds = [(r["exec_type"], r["order_status"]) for r in reports(probe)]
        assert kinds == [("pending_new", "pending_new"), ("new", "new"), ("trade", "filled"), ("filled", "filled")]
    finally:
        server.shutdown()


def test_cancel_order_answers_per_order_and_reports_the_reason(exchange, probe):
    probe.subscribe()
    order_id = limit_buy(probe, cl_ord_id="c-1")["result"]["order_id"]
    reports(probe)
    req_id = probe.send("cancel_order", {"order_id": [order_id, "OAAAAA-BBBBB-CCCCCC"]})
    answers = [probe.answer(req_id), probe.answer(req_id)]
    assert {(a["success"], a.get("error")) for a in answers} == {(True, None), (False, "EOrder:Unknown order")}
    assert [a["result"] for a in answers if a["success"]] == [{"order_id": order_id}]
    [canceled] = reports(probe)
    assert canceled == {"exec_type": "canceled", "order_status": "canceled", "order_id": order_id,
                        "reason": "User requested", "cum_qty": 0, "timestamp": canceled["timestamp"]}
    assert exchange.order(order_id)["status"] == "canceled"


def test_cancel_by_cl_ord_id_and_cancel_all(exchange, probe):
    limit_buy(probe, cl_ord_id="c-1")
    limit_buy(probe, price="41000")
    limit_buy(probe, price="40000")
    assert probe.request("cancel_order", {"cl_ord_id": ["c-1"]})["result"] == {"cl_ord_id": "c-1"}
    assert probe.request("cancel_all")["result"] == {"count": 2}
    assert exchange.open_orders() == {}


def test_cancel_all_orders_after_arms_the_dead_mans_switch(exchange, clock, probe):
    answer = probe.request("cancel_all_orders_after", {"timeout": 60})
    assert answer["success"] is True and set(answer["result"]) == {"currentTime", "triggerTime"}
    assert exchange.engine.dead_man_at == clock() + 60
    assert probe.request("cancel_all_orders_after", {"timeout": 0})["result"]["triggerTime"] == "0"
    assert probe.request("cancel_all_orders_after", {})["error"] == "EGeneral:Invalid arguments:timeout"


def test_amend_order_changes_the_order_in_place_and_reports_amended(exchange, probe):
    probe.subscribe()
    order_id = limit_buy(probe, cl_ord_id="am-1")["result"]["order_id"]
    reports(probe)
    answer = probe.request("amend_order", {"cl_ord_id": "am-1", "limit_price": Decimal("42100"),
                                           "order_qty": Decimal("0.02")})
    assert answer["success"] is True and answer["result"]["amend_id"] and answer["result"]["cl_ord_id"] == "am-1"
    [amended] = reports(probe)
    assert amended["exec_type"] == "amended" and amended["order_id"] == order_id and amended["amended"] is True
    assert amended["limit_price"] == 42100 and amended["order_qty"] == Decimal("0.02")
    assert exchange.order(order_id)["descr"]["price"] == "42100.0" and exchange.order(order_id)["vol"] == "0.02000000"
    stop = probe.request("add_order", {"order_type": "stop-loss", "side": "sell", "order_qty": Decimal("0.01"),
                                       "symbol": "BTC/USD", "triggers": {"price": Decimal("40000")}})
    stop_id = stop["result"]["order_id"]
    reports(probe)
    assert probe.request("amend_order", {"order_id": stop_id, "trigger_price": Decimal("39000")})["success"]
    [moved] = reports(probe)
    assert moved["triggers"]["price"] == 39000 and "order_qty" not in moved and "limit_price" not in moved
    assert exchange.order(stop_id)["descr"]["price"] == "39000.0"
    refused = probe.request("amend_order", {"order_id": stop_id, "limit_price": Decimal("1")})
    assert refused["error"] == "EGeneral:Invalid arguments:limit_price"


def test_heartbeats_flow_only_while_subscribed_and_idle(probe):
    with pytest.raises(TimeoutError):
        probe.recv(timeout=HEARTBEAT * 4)               # not subscribed: nothing
    probe.subscribe()
    assert probe.recv(timeout=1) == {"channel": "heartbeat"}
    assert probe.recv(timeout=1) == {"channel": "heartbeat"}


def test_a_price_tick_triggering_a_stop_is_reported(exchange, probe):
    probe.subscribe()
    stop_id = probe.request("add_order", {"order_type": "stop-loss", "side": "sell", "order_qty": Decimal("0.01"),
                                          "symbol": "BTC/USD", "triggers": {"price": Decimal("42000")}})[
        "result"]["order_id"]
    reports(probe)
    exchange.set_price("BTC/USD", "41900")
    status, trade, filled = reports(probe)
    assert status["exec_type"] == "status" and status["triggers"]["status"] == "triggered"
    assert trade["exec_type"] == "trade" and trade["last_price"] == 41900 and trade["liquidity_ind"] == "t"
    assert filled["exec_type"] == "filled" and filled["order_id"] == stop_id


def test_expiry_is_reported(exchange, clock, probe):
    probe.subscribe()
    order_id = limit_buy(probe, time_in_force="gtd", expire_time="2023-11-14T22:14:00Z")["result"]["order_id"]
    reports(probe)
    clock.advance(3600)
    exchange.process_time()
    [expired] = reports(probe)
    assert expired["exec_type"] == "expired" and expired["order_id"] == order_id


# -- REST and WS are two doors onto one engine ------------------------------------------------------


def test_rest_orders_are_pushed_and_ws_orders_are_on_rest(exchange, client, probe):
    probe.subscribe()
    txid = client.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="41000", volume="0.01")["txid"][0]
    pending, _ = reports(probe)
    assert pending["order_id"] == txid and pending["limit_price"] == 41000
    ws_id = limit_buy(probe, cl_ord_id="ws-1")["result"]["order_id"]
    reports(probe)
    open_orders = client.ok("OpenOrders")["open"]
    assert set(open_orders) == {txid, ws_id} and open_orders[ws_id]["cl_ord_id"] == "ws-1"
    client.ok("CancelOrder", txid=ws_id)
    assert reports(probe)[0]["exec_type"] == "canceled"


def test_two_connections_each_get_every_change(exchange, open_probe):
    first, second = open_probe(), open_probe()
    first.subscribe()
    second.subscribe()
    order_id = limit_buy(first)["result"]["order_id"]
    assert [r["order_id"] for r in reports(first)] == [order_id, order_id]
    assert [r["order_id"] for r in reports(second)] == [order_id, order_id]


def test_unsubscribe_ends_the_updates(exchange, probe, place):
    probe.subscribe()
    assert probe.request("unsubscribe", {"channel": "executions"})["result"] == {"channel": "executions"}
    place(type="buy", ordertype="market", volume="0.01")
    with pytest.raises(TimeoutError):
        probe.executions(timeout=HEARTBEAT * 4)


def test_a_second_subscription_is_refused(probe):
    probe.subscribe()
    assert probe.subscribe()[0]["error"] == "Already subscribed"


# -- wire format and lifecycle ----------------------------------------------------------------------


def test_numbers_are_exact_json_numbers():
    text = dumps({"qty": Decimal("0.00012345"), "big": Decimal("1E+3"), "zero": Decimal("-0.000"), "n": 3})
    assert text == '{"qty":0.00012345,"big":1000,"zero":0,"n":3}'
    assert loads(text)["qty"] == Decimal("0.00012345")
    with pytest.raises(TypeError):
        dumps({"price": 0.1})


def test_shutdown_closes_connections_and_leaves_no_threads(exchange):
    before = set(threading.enumerate())
    server = exchange.serve_ws(heartbeat_interval=HEARTBEAT)
    probe = WsProbe(server.url, exchange.ws_tokens.issue()["token"])
    probe.recv()
    probe.subscribe()
    server.shutdown()
    server.shutdown()                                     # idempotent
    with pytest.raises(Exception):  # noqa: B017 - closed by the server: any ConnectionClosed
        for _ in range(10):   # bounded: a connection left open must fail the test, never hang the suite
            probe.recv(timeout=1)
    probe.close()   # the client's own reader thread ends with its connection: joined here, not raced
    left = set(threading.enumerate()) - before
    assert left == set(), [t.name for t in left]
    assert exchange.engine.add_observer(lambda changes: None) is not None   # the engine still works


def test_binds_to_loopback_only(exchange):
    with pytest.raises(ValueError):
        exchange.serve_ws(host="0.0.0.0")


def test_concurrent_ticks_and_orders_report_every_trade_once_in_sequence(make_exchange, open_probe, client_for):
    exchange = make_exchange(liquidity_per_tick="0.003", balances={"ZUSD": "1000000", "XXBT": "50"})
    server = exchange.serve_ws(heartbeat_interval=HEARTBEAT)
    try:
        probe = open_probe(exchange, server)
        probe.subscribe(snap_orders=False)
        client = client_for(exchange)
        errors: list[BaseException] = []

        def trader(side: str, price: str, rest: bool) -> None:
            params = {"pair": "XBTUSD", "type": side, "ordertype": "limit", "price": price, "volume": "0.01"}
            try:
                for _ in range(15):     # one signed REST client per key (nonces), the other straight on the engine
                    client.ok("AddOrder", **params) if rest else exchange.engine.add_order(parse_add_order(params))
            except BaseException as exc:  # noqa: BLE001 - reported by the assert below
                errors.append(exc)

        def ticker() -> None:
            for i in range(40):
                exchange.set_price("BTC/USD", "42900" if i % 2 else "43100")

        threads = [threading.Thread(target=trader, args=("buy", "43000", True)),
                   threading.Thread(target=trader, args=("sell", "43000", False)), threading.Thread(target=ticker)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == []
        probe.request("ping", req_id=10_000, token=False)      # one outbox: every report came before the pong
        frames = [m for m in probe.seen if m.get("channel") == "executions"]
        assert [f["sequence"] for f in frames] == list(range(1, len(frames) + 1))
        exec_ids = [r["exec_id"] for f in frames for r in f["data"] if r["exec_type"] == "trade"]
        assert exec_ids and len(exec_ids) == len(set(exec_ids)) and set(exec_ids) == set(exchange.trades())
        placed = [r["order_id"] for f in frames for r in f["data"] if r["exec_type"] == "pending_new"]
        assert len(placed) == 30
    finally:
        server.shutdown()
