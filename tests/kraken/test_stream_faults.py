"""The stream under the failures real private streams show (paper `ws_faults`, plus a scripted server for
what the paper exchange never does): silence, drops, sequence gaps and repeats, token trouble, refusals."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace

import pytest
from websockets.sync.server import serve

from triplegain_fsm.kraken import errors as E
from triplegain_fsm.kraken import stream_session
from triplegain_fsm.kraken.stream import StreamState
from triplegain_fsm.kraken.stream_wire import dumps, loads

pytestmark = pytest.mark.integration
LIMIT_BUY = {"type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.01"}


def of(order_id: str, exec_type: str | None = None):
    return lambda r: r.order_id == order_id and (exec_type is None or r.exec_type == exec_type)


def in_last_snapshot(rec, order_id: str) -> bool:
    snapshots = rec.snapshots()
    return bool(snapshots) and order_id in {r.order_id for r in snapshots[-1].reports}


# -- silence, drops, gaps (the paper exchange's scripted faults) ---------------------------------


def test_silence_goes_down_then_reconnects_with_a_fresh_token_and_a_new_snapshot(connected, paper, paper_place):
    stream, rec = connected
    missed: list[str] = []
    paper.ws_faults.silence()
    missed.append(paper_place(**LIMIT_BUY))                    # its update is swallowed by the silence
    rec.hooks["down"] = paper.ws_faults.resume                  # on the stream's thread, before it reconnects
    reason = rec.wait_state("down")
    assert reason.startswith("silent for ") and reason.endswith(" s")
    assert rec.wait_state("connected", 2)
    assert [s.value for s, _ in rec.states] == ["connecting", "connected", "down", "connecting", "connected"]
    assert len(rec.snapshots()) == 2 and in_last_snapshot(rec, missed[0])         # nothing lost
    assert len(rec.tokens.tokens) == 2 and rec.tokens.tokens[0] != rec.tokens.tokens[1]
    assert "reconnecting after" in rec.states[3][1]


def test_a_dropped_connection_reconnects_and_the_snapshot_has_what_happened_meanwhile(connected, paper,
                                                                                       paper_place):
    stream, rec = connected
    placed: list[str] = []
    rec.hooks["down"] = lambda: placed.append(paper_place(**LIMIT_BUY))     # while nobody is connected
    paper.ws_faults.drop_now()
    assert rec.wait_state("down").startswith("connection closed")
    assert rec.wait_state("connected", 2)
    assert in_last_snapshot(rec, placed[0]) and stream.cached_orders == 1


def test_a_sequence_gap_resubscribes_on_the_same_socket_for_a_new_snapshot(connected, paper, paper_ws,
                                                                           paper_place):
    stream, rec = connected
    paper.ws_faults.drop_next_update()                         # lost, and its sequence number used up
    lost = paper_place(**LIMIT_BUY)
    second = paper_place(**{**LIMIT_BUY, "price": "41000"})
    assert rec.wait_state("down") == "gap in executions: expected sequence 2, got 3"
    assert rec.wait_state("connected", 2)
    assert rec.states[3] == (StreamState.CONNECTING, "resubscribing after gap in executions: expected "
                                                     "sequence 2, got 3")
    assert in_last_snapshot(rec, lost) and in_last_snapshot(rec, second)
    assert not [r for b in rec.batches if b.kind == "update" for r in b.reports if r.order_id == second]  # gapped
    assert len(rec.tokens.tokens) == 1 and paper_ws.connection_count == 1                     # no reconnect
    third = paper_place(**{**LIMIT_BUY, "price": "40000"})
    assert rec.report(of(third, "new")) and rec.batches[-1].sequence == 2                     # counts afresh


# -- tokens and permissions ----------------------------------------------------------------------


def test_invalidated_tokens_end_the_subscription_and_a_fresh_token_is_used(connected, paper):
    stream, rec = connected
    paper.ws_faults.invalidate_tokens()                        # the subscription ends: no more heartbeats
    assert rec.wait_state("down").startswith("silent for")
    assert rec.wait_state("connected", 2)
    assert len(rec.tokens.tokens) == 2
    assert stream.request("cancel_all", {}, timeout=2) == {"count": 0}     # the new token works for trading


def test_a_request_refused_for_its_token_raises_and_the_stream_reconnects(connected, paper):
    stream, rec = connected
    paper.ws_faults.invalidate_tokens()
    with pytest.raises(E.InvalidWsToken) as raised:
        stream.request("cancel_all", {}, timeout=2)
    assert raised.value.order_not_placed and raised.value.retry_safe
    assert rec.wait_state("down") == "token refused on cancel_all: EAPI:Invalid token"
    assert rec.wait_state("connected", 2)


def test_a_refused_token_at_subscribe_is_replaced_once_on_the_same_socket(kx, open_stream, paper, paper_ws):
    tokens = scripted_tokens(kx, paper, lambda: "not-a-token")
    stream, rec = open_stream(tokens=tokens)
    assert stream.wait_connected(5)
    assert [s.value for s, _ in rec.states] == ["connecting", "connected"]
    assert tokens.tokens[0] == "not-a-token" and len(tokens.tokens) == 2


def test_a_token_refused_twice_is_an_outage_with_the_reason(kx, open_stream, paper):
    tokens = scripted_tokens(kx, paper, lambda: "bad-1", lambda: "bad-2")
    stream, rec = open_stream(tokens=tokens)
    assert rec.wait_state("down") == "subscribe refused: EAPI:Invalid token"
    assert stream.wait_connected(5) and len(tokens.tokens) == 3            # the next connection got a good one


def test_a_key_without_the_websocket_permission_says_so(kx, open_stream, paper):
    def refused() -> str:
        raise E.PermissionDenied(raw=["EGeneral:Permission denied"], endpoint="GetWebSocketsToken")

    stream, rec = open_stream(tokens=scripted_tokens(kx, paper, refused))
    reason = rec.wait_state("down")
    assert "lacks the 'WebSocket interface' permission" in reason and "EGeneral:Permission denied" in reason
    assert stream.wait_connected(5)


def scripted_tokens(kx, paper, *first):
    """The real token source, answering with `first` (functions) before going to REST."""
    tokens = kx.TokenSource(paper)
    tokens.before.extend(first)
    return tokens


# -- what the paper exchange never sends: a scripted server --------------------------------------


class Script:
    """A v2 server that answers the subscribe with a scripted list of frames, then heartbeats."""

    def __init__(self, frames: list[dict], ack_after_snapshot: bool = False) -> None:
        self.frames, self.ack_after_snapshot = frames, ack_after_snapshot
        self.received: list[dict] = []
        self.pinged = threading.Event()

    def handler(self, ws) -> None:
        ws.send(dumps({"channel": "status", "type": "update", "data": [{"system": "maintenance"}]}))
        for raw in ws:
            message = loads(raw)
            self.received.append(message)
            if message.get("method") != "subscribe":
                continue
            ack = {"method": "subscribe", "req_id": message["req_id"], "success": True,
                   "result": {"channel": "executions"}}
            frames = [*self.frames, ack] if self.ack_after_snapshot else [ack, *self.frames]
            for frame in frames:
                ws.send(frame if isinstance(frame, str) else dumps(frame))
            while True:
                ws.send(dumps({"channel": "heartbeat"}))
                try:
                    later = loads(ws.recv(timeout=0.05))
                except TimeoutError:
                    continue
                self.received.append(later)
                if later.get("method") == "ping":
                    self.pinged.set()


@pytest.fixture
def scripted() -> Iterator:
    servers = []

    def run(script: Script) -> str:
        server = serve(script.handler, "127.0.0.1", 0, ping_interval=None)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}/v2"

    yield run
    for server in servers:
        server.shutdown()


def execs(kind: str, sequence, *reports) -> dict:
    return {"channel": "executions", "type": kind, "sequence": sequence, "data": list(reports)}


def test_repeated_or_older_sequences_are_ignored_and_odd_values_do_not_crash(scripted, open_stream, caplog):
    full = {"order_id": "O1", "exec_type": "new", "order_status": "new", "symbol": "BTC/USD", "cl_ord_id": "c1",
            "order_qty": Decimal("1.5"), "limit_price": Decimal("0.00012345")}
    script = Script([
        execs("snapshot", 1, full),
        execs("update", 2, {"order_id": "O1", "exec_type": "iceberg_refill", "order_status": "new"}),
        execs("update", 2, {"order_id": "O1", "exec_type": "dup", "order_status": "new"}),       # repeated
        execs("update", 1, {"order_id": "O1", "exec_type": "old", "order_status": "new"}),       # older
        "not json at all", "[1, 2]", {"channel": "book", "data": []}, {"method": "add_order", "req_id": 99},
        execs("update", 3, {"order_id": "O1", "exec_type": "brand_new_type", "order_status": "on_the_moon",
                            "last_qty": Decimal("0.1")}),
        execs("update", 4, {"order_id": "O1", "exec_type": "trade", "order_status": "filled",
                            "trade_id": 7, "exec_id": "T1", "last_qty": Decimal("1.4")}),
    ], ack_after_snapshot=True)
    stream, rec = open_scripted(open_stream, scripted(script))
    assert stream.wait_connected(5)
    last = rec.report(lambda r: r.exec_type == "trade")
    kinds = [r.exec_type for r in rec.reports()]
    assert kinds == ["new", "iceberg_refill", "brand_new_type", "trade"]           # 2 again and 1: ignored
    assert [b.sequence for b in rec.batches] == [1, 2, 3, 4]
    odd = rec.reports()[2]
    assert odd.order_status == "on_the_moon" and odd.merged["cl_ord_id"] == "c1"
    assert last.merged["limit_price"] == Decimal("0.00012345") and "last_qty" in last.merged
    assert last.is_final and stream.cached_orders == 0
    assert "system 'maintenance'" in caplog.text and "answer nobody waits for" in caplog.text
    assert script.received[0]["params"]["snap_trades"] is True and script.received[0]["params"]["snap_orders"]


def open_scripted(open_stream, url: str, **kwargs):
    return open_stream(server=SimpleNamespace(url=url), tokens=lambda: "scripted-token", **kwargs)


class Mute(Script):
    def handler(self, ws) -> None:
        for _ in ws:
            pass


class HeartbeatsOnly(Script):
    def handler(self, ws) -> None:
        while True:
            ws.send(dumps({"channel": "heartbeat"}))
            try:
                ws.recv(timeout=0.05)
            except TimeoutError:
                continue


def test_a_snapshot_without_sequence_takes_the_first_update_as_the_start(scripted, open_stream):
    order = {"order_id": "O1", "exec_type": "new", "order_status": "new"}
    script = Script([{"channel": "executions", "type": "snapshot", "data": [order]},
                     execs("update", 5, order), execs("update", 6, order), execs("update", 8, order)])
    stream, rec = open_scripted(open_stream, scripted(script))
    assert rec.wait_state("down") == "gap in executions: expected sequence 7, got 8"
    assert [b.sequence for b in rec.batches] == [None, 5, 6]


def test_a_ping_goes_out_when_nothing_was_sent_for_a_while(scripted, open_stream, monkeypatch):
    monkeypatch.setattr(stream_session, "PING_SECONDS", 0.1)
    script = Script([execs("snapshot", 1)])
    stream, rec = open_scripted(open_stream, scripted(script))
    assert stream.wait_connected(5)
    assert script.pinged.wait(5)


def test_a_close_frame_from_the_server_is_an_outage_then_connects_are_retried(connected, paper_ws):
    stream, rec = connected
    paper_ws.shutdown()                                         # close frame 1001, then nobody listens
    assert "1001" in rec.wait_state("down")
    assert rec.wait_state("down", 2).startswith("connect failed: ConnectionRefusedError")


def test_a_server_that_says_nothing_is_silent_and_is_retried(scripted, open_stream):
    stream, rec = open_scripted(open_stream, scripted(Mute([])))
    assert rec.wait_state("down").startswith("silent for")
    assert rec.wait_state("connecting", 2) and stream.state is not StreamState.CONNECTED


def test_heartbeats_without_a_subscribe_answer_are_not_connected(scripted, open_stream):
    stream, rec = open_scripted(open_stream, scripted(HeartbeatsOnly([])), open_timeout=0.4)
    assert rec.wait_state("down") == "not subscribed within 0.4 s (ack False, snapshot False)"
