"""Order entry over the WebSocket without a socket: the real `WsOrderEntry` on a synchronous fake socket.

`SimSocket` is the `TradingSocket` the core's `WsOrderEntry` sends on. A request is
turned into JSON and back (as the wire would), checked against the session's token
and run through the paper exchange's own v2 trading handlers (`paper.ws_methods.TRADING`,
the code its WebSocket server runs), synchronously, on the calling thread; its execution
reports reach the core through `SimStream`'s queue like every other change. Around the
exchange are the crash switch's two call points (dies before sending / after the exchange
acted) and the WS fault kinds queued on `paper.ws_faults`:

    drop_before   the connection breaks before the exchange acts: ConnectionFailed, stream down
    fail          an error answer (the exchange did not act), raised through `errors.classify`
    drop_after    the exchange acts, the connection breaks unanswered: ConnectionFailed, stream down
    unanswered    the exchange acts, no answer in time: RequestTimeout (still connected)

Not emulated: the answer arriving after the order's execution reports (`reorder_next`) and
the world moving during the round trip (`during_next`). Both need the stream's thread to
apply reports while the sender waits; on one thread that would be re-entrancy the real core
never sees. (Reports arriving in another order than sent is the stream's `reorder` fault.)
Every request is logged in `paper.ws_calls`, so "no order twice" counts both channels.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from triplegain_fsm.kraken.errors import ConnectionFailed, RequestTimeout, StreamNotConnected, classify
from triplegain_fsm.kraken.stream import StreamState
from triplegain_fsm.paper import KrakenRejection
from triplegain_fsm.paper.endpoints import Context
from triplegain_fsm.paper.ws_faults import DROP_AFTER, DROP_BEFORE, FAIL, UNANSWERED, WsFault
from triplegain_fsm.paper.ws_json import dumps, loads
from triplegain_fsm.paper.ws_methods import TRADING
from triplegain_fsm.simulate.crash import CrashSwitch
from triplegain_fsm.simulate.stream import SimStream

INVALID_TOKEN = "EAPI:Invalid token"
WS_FAULTS = (DROP_BEFORE, FAIL, DROP_AFTER, UNANSWERED)
WS_ERRORS = ("EService:Unavailable", "EOrder:Rate limit exceeded", "EGeneral:Internal error", "EService:Busy")
WS_METHODS = ("add_order", "amend_order", "cancel_order", "*")


def queue_fault(paper: Any, kind: str, method: str, error: str, times: int) -> None:
    faults = paper.ws_faults
    if kind == FAIL:
        faults.fail_next(method, error, times)
    elif kind == DROP_BEFORE:
        faults.drop_before_next(method, times)
    elif kind == DROP_AFTER:
        faults.drop_after_next(method, times)
    else:
        faults.unanswered_next(method, times)


class SimSocket:
    def __init__(self, stream: SimStream, paper: Any, switch: CrashSwitch) -> None:
        self.stream, self.paper, self.switch = stream, paper, switch
        self.context = Context(paper.engine, paper.api.rate_limiter, paper.ws_tokens)

    @property
    def state(self) -> StreamState:
        return self.stream.transport.state

    def request(self, method: str, params: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        where = f"ws {method}"
        if not self.stream.connected or self.stream.token is None:
            raise StreamNotConnected(f"stream {self.state.value}: request NOT sent", endpoint=where)
        wire = loads(dumps({**params, "token": self.stream.token.reveal()}))
        self.switch.before_send()                     # dies before the exchange sees it
        fault = self.paper.ws_faults.take(method, wire) if method in TRADING else None
        kind = fault.kind if fault is not None else None
        if kind == DROP_BEFORE:
            self._log(method, wire, fault, acted=False, errors=[])
            self.stream.drop("connection dropped before the exchange acted")
            raise ConnectionFailed("connection lost after sending; outcome unknown, not resent", endpoint=where)
        if kind == FAIL:
            assert fault is not None and fault.error is not None
            self._log(method, wire, fault, acted=False, errors=[fault.error])
            raise classify([fault.error], endpoint=where)
        result, error = self._trade(method, wire, fault)
        self.switch.after_act()                       # the exchange acted; the answer is never read
        if kind == DROP_AFTER:
            self.stream.drop("connection dropped after the exchange acted")
            raise ConnectionFailed("connection lost after sending; outcome unknown, not resent", endpoint=where)
        if kind == UNANSWERED:
            raise RequestTimeout(f"no answer within {timeout:g} s; outcome unknown, not resent", endpoint=where)
        if error is not None:
            raise classify([error], endpoint=where)
        answer = loads(dumps({"result": result}))
        return dict(answer["result"] or {})

    def _trade(self, method: str, wire: dict[str, Any], fault: WsFault | None) -> tuple[Any, str | None]:
        acted = False
        try:
            if not self.paper.ws_tokens.use(wire.get("token")):
                raise KrakenRejection(INVALID_TOKEN)
            acted = True
            result = TRADING[method](self.context, wire)
            outcome = result[0] if isinstance(result, list) else (result, None)
        except KrakenRejection as rejection:
            outcome = (None, rejection.error)
        self._log(method, wire, fault, acted=acted, errors=[outcome[1]] if outcome[1] else [])
        return outcome

    def _log(self, method: str, wire: dict[str, Any], fault: WsFault | None, *, acted: bool,
             errors: list[str]) -> None:
        params = {k: _text(v) for k, v in wire.items() if k != "token"}
        self.paper.ws_calls.record(time=self.paper.engine.now(), http_method="WS", path="/v2", method=method,
                                   params=params, private=True, acted=acted,
                                   fault=fault.kind if fault is not None else None, error=errors)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return format(value, "f") if isinstance(value, Decimal) else str(value)
