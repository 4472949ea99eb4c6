"""The WebSocket v2 execution stream against the paper exchange over loopback: connect, snapshot,
sparse updates merged into whole orders, partial fills, cancels, heartbeats, stop."""
from __future__ import annotations

import logging
import socket
import threading
from decimal import Decimal

import pytest
import websockets.frames

from triplegain_fsm.kraken.errors import StreamNotConnected
from triplegain_fsm.kraken.stream import ExecutionStream, StreamState
from triplegain_fsm.kraken.stream_cache import TRADE_FIELDS

pytestmark = pytest.mark.integration
LIMIT_BUY = {"type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.01"}


def of(order_id: str, exec_type: str | None = None):
    return lambda r: r.order_id == order_id and (exec_type is None or r.exec_type == exec_type)


def test_snapshot_holds_the_orders_resting_before_connect(open_stream, paper_place):
    first = paper_place(**LIMIT_BUY, cl_ord_id="rest-1")
    second = paper_place(**{**LIMIT_BUY, "price": "41000"})
    stream, rec = open_stream()
    assert stream.wait_connected(5)
    assert [s.value for s, _ in rec.states] == ["connecting", "connected"]
    [snapshot] = rec.snapshots()
    assert snapshot.sequence == 1 and rec.batches[0] is snapshot         # delivered before "connected"
    by_id = {r.order_id: r for r in snapshot.reports}
    assert set(by_id) == {first, second}
    assert by_id[first].merged["cl_ord_id"] == "rest-1" and by_id[first].merged["symbol"] == "BTC/USD"
    assert by_id[first].merged["limit_price"] == 42000 and by_id[first].merged["order_qty"] == Decimal("0.01")
    assert stream.cached_orders == 2 and stream.state is StreamState.CONNECTED


def test_a_new_order_is_an_update_whose_sparse_new_report_is_merged_whole(connected, paper_place):
    stream, rec = connected
    order_id = paper_place(**LIMIT_BUY, cl_ord_id="new-1")
    new = rec.report(of(order_id, "new"))
    pending = rec.report(of(order_id, "pending_new"))
    assert "symbol" not in new.raw and "limit_price" not in new.raw                # the wire is sparse
    assert new.merged["symbol"] == "BTC/USD" and new.merged["side"] == "buy"       # the view is whole
    assert new.merged["order_type"] == "limit" and new.merged["limit_price"] == 42000
    assert new.merged["order_status"] == "new" and pending.merged["order_status"] == "pending_new"
    assert [b.kind for b in rec.batches] == ["snapshot", "update"] and rec.batches[1].sequence == 2


def test_partial_fills_each_carry_their_own_trade_and_the_whole_order(make_paper, open_stream, paper_place):
    exchange = make_paper(liquidity_per_tick="0.004")
    server = exchange.serve_ws(heartbeat_interval=0.05)
    try:
        stream, rec = open_stream(exchange=exchange, server=server)
        assert stream.wait_connected(5)
        order_id = paper_place(exchange, **LIMIT_BUY, cl_ord_id="part-1")
        rec.report(of(order_id, "new"))
        exchange.set_price("BTC/USD", "41900")
        exchange.set_price("BTC/USD", "41950")
        rec.wait(lambda: len([r for r in rec.reports() if r.is_trade]) == 2, what="two trades")
        first, second = [r for r in rec.reports() if r.is_trade]
        for trade, cum in ((first, "0.004"), (second, "0.008")):
            assert "cl_ord_id" not in trade.raw and "symbol" not in trade.raw
            assert trade.merged["cl_ord_id"] == "part-1" and trade.merged["symbol"] == "BTC/USD"
            assert trade.merged["cum_qty"] == Decimal(cum) and trade.merged["last_qty"] == Decimal("0.004")
            assert trade.merged["order_status"] == "partially_filled" and not trade.is_final
        assert first.raw["trade_id"] != second.raw["trade_id"]
        assert second.merged["trade_id"] == second.raw["trade_id"]                      # its own, not the first's
        assert {first.raw["exec_id"], second.raw["exec_id"]} <= set(exchange.trades())
        stream.request("cancel_order", {"order_id": [order_id]}, timeout=2)
        canceled = rec.report(of(order_id, "canceled"))
        assert canceled.merged["reason"] == "User requested" and canceled.is_final
        assert not TRADE_FIELDS & set(canceled.merged)                                  # no fill carried over
        assert canceled.merged["cum_qty"] == Decimal("0.008") and canceled.merged["cl_ord_id"] == "part-1"
        assert stream.cached_orders == 0                                                # final: evicted
        assert [b.sequence for b in rec.batches] == list(range(1, len(rec.batches) + 1))
    finally:
        stream.stop()
        server.shutdown()


def test_the_completing_trade_then_the_filled_report_and_the_cache_forgets_the_order(connected, paper, paper_place):
    stream, rec = connected
    order_id = paper_place(**LIMIT_BUY)
    rec.report(of(order_id, "new"))
    assert stream.cached_orders == 1
    paper.set_price("BTC/USD", "41000")
    filled = rec.report(of(order_id, "filled"))
    trade = rec.report(of(order_id, "trade"))
    assert trade.raw["order_status"] == "partially_filled" and trade.is_trade        # Kraken's quirk
    assert filled.is_final and not filled.is_trade and not TRADE_FIELDS & set(filled.merged)
    assert filled.merged["symbol"] == "BTC/USD" and filled.merged["cum_qty"] == Decimal("0.01")
    assert stream.cached_orders == 0


def test_heartbeats_keep_a_quiet_stream_connected(open_stream, paper_ws):
    stream, rec = open_stream(stale_seconds=0.25)
    assert stream.wait_connected(5)
    assert rec.stays(lambda: len(rec.states) > 2, seconds=4 * 0.25)    # 4 x stale_seconds of heartbeats only
    assert stream.state is StreamState.CONNECTED and len(rec.tokens.tokens) == 1
    assert paper_ws.connection_count == 1


def test_a_slow_callback_is_not_mistaken_for_a_silent_exchange(kx, open_stream, paper_place):
    class Slow(kx.StreamRecorder):
        def on_batch(self, batch):
            if batch.kind == "update" and len(self.batches) == 1:
                threading.Event().wait(3 * 0.25)        # busy consumer: 3 x stale_seconds of work
            super().on_batch(batch)

    stream, rec = open_stream(recorder=Slow(), stale_seconds=0.25)
    assert stream.wait_connected(5)
    first = paper_place(**LIMIT_BUY)
    second = paper_place(**{**LIMIT_BUY, "price": "41000"})
    rec.report(of(second, "new"))
    assert rec.report(of(first, "new")) and [s.value for s, _ in rec.states] == ["connecting", "connected"]


def test_stop_closes_joins_and_leaves_no_thread(paper_ws, open_stream):
    before = set(threading.enumerate())               # the paper server is already running
    stream, rec = open_stream()
    assert stream.wait_connected(5)
    stream.stop()
    stream.stop()                                     # idempotent
    assert stream.state is StreamState.OFF and rec.states[-1][0] is StreamState.OFF
    assert not [t for t in threading.enumerate() if t.name == "kraken-stream"]
    with pytest.raises(StreamNotConnected):
        stream.request("cancel_all", {}, timeout=1)
    paper_ws.shutdown()                               # joins the server's side of the connection too
    assert set(threading.enumerate()) - before == set()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{sock.getsockname()[1]}/v2"      # nobody listens there once closed


def test_stop_before_start_and_stop_during_the_backoff():
    url = closed_port_url()
    ExecutionStream(url, lambda: "t", lambda b: None, lambda s, r: None).stop()   # never started: nothing to do
    states: list[tuple[str, str]] = []
    down = threading.Event()

    def on_state(state, reason):
        states.append((state.value, reason))
        if state is StreamState.DOWN:
            down.set()

    stream = ExecutionStream(url, lambda: "t", lambda b: None, on_state, reconnect_min_seconds=30,
                             reconnect_max_seconds=60)
    stream.start()
    assert down.wait(5)                               # refused: down, then a 30 s backoff begins
    stream.stop()                                     # interrupts the backoff at once
    assert [s for s, _ in states] == ["connecting", "down", "off"]
    assert states[1][1].startswith("connect failed: ConnectionRefusedError")


def test_callback_exceptions_are_logged_and_the_stream_goes_on(kx, open_stream, paper_place, caplog):
    class Failing(kx.StreamRecorder):
        def on_batch(self, batch):
            super().on_batch(batch)
            raise RuntimeError("consumer bug in on_batch")

        def on_state(self, state, reason):
            super().on_state(state, reason)
            raise RuntimeError("consumer bug in on_state")

    stream, rec = open_stream(recorder=Failing())
    assert stream.wait_connected(5)
    paper_place(**LIMIT_BUY)
    second = paper_place(**{**LIMIT_BUY, "price": "40000"})
    rec.report(of(second, "new"))                     # batches kept coming after the first one raised
    assert "consumer bug in on_batch" in caplog.text and "consumer bug in on_state" in caplog.text
    assert stream.state is StreamState.CONNECTED


def test_the_token_is_never_logged_nor_shown(open_stream, paper, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)                    # websockets would log every frame at DEBUG ...
    monkeypatch.setattr(websockets.frames.Frame, "MAX_LOG_SIZE", 100_000)   # ... whole (WEBSOCKETS_MAX_LOG_SIZE)
    stream, rec = open_stream()
    assert stream.wait_connected(5)
    stream.request("add_order", {"order_type": "market", "side": "buy", "order_qty": Decimal("0.01"),
                                 "symbol": "BTC/USD"}, timeout=2)
    paper.ws_faults.invalidate_tokens()
    with pytest.raises(Exception) as raised:          # noqa: B017 - any error: its text is what matters
        stream.request("cancel_all", {}, timeout=2)
    assert rec.wait_state("connected", 2)
    ours = [r for r in caplog.records if not r.name.startswith("websockets.server")]   # not the paper side's
    assert any(r.name.startswith("websockets.server") and r.levelno == logging.DEBUG for r in caplog.records)
    shown = "\n".join(r.getMessage() for r in ours) + repr(stream) + str(raised.value) + repr(rec.states)
    assert len(rec.tokens.tokens) == 2 and all(token not in shown for token in rec.tokens.tokens)
