"""A bot process for the crash tests: trades, or recovers, against a paper exchange on a loopback port.

    python tests/crash/scripted_trade.py --url URL --store PATH --mode trade --scenario market \
        --kill-at add_order#2:before
    python tests/crash/scripted_trade.py --url URL --store PATH --mode recover --clock-offset 120

The core runs exactly as a bot would run it in production: `exchange.mode: live`,
credentials from KRAKEN_API_KEY / KRAKEN_API_SECRET, talking HTTP to `--url`. The
exchange lives in the test process, so it outlives this one.

Trade mode runs a scripted margin trade (BTC/USD buy, stop-loss, take-profit,
leverage 2) and dies with `os._exit(137)` at the kill point: no finally blocks, no
atexit, no flush, as if the machine lost power between two instructions. Kill
points wrap methods of THIS process's objects only (never the library's code);
N counts this process's calls of the method:

    add_order#N:before   the N-th AddOrder is about to be sent (its order is PENDING in the store)
    add_order#N:after    the exchange accepted the N-th AddOrder; the core never saw the answer
    cancel_order#N:...   the same for CancelOrder
    amend_order#N:...    the same for AmendOrder
    protected#N:before   a position's legs are recorded and it is about to be marked PROTECTED
    none                 run to the end and exit 0

Scenarios (the order of exchange calls is the same on every run):

    market   market entry (fills at once) -> poll: fill, stop-loss, take-profit, PROTECTED
             -> modify_position(stop_loss=41500): AmendOrder#1 -> close_position:
             CancelOrder#1 (stop), CancelOrder#2 (take-profit), AddOrder#4 (close) -> poll: CLOSED
    limit    limit entry below the market: it rests (the test moves the price to fill it)
    partial  market entry on a thin book (the test's exchange fills it in two parts): legs for the
             first part, then AmendOrder#1/#2 grow the stop-loss/take-profit to the whole size

Recover mode is a fresh process on the same store: construct the core (restore),
poll `--early-polls` times on a clock that continues the dead process's (before
any submit deadline has passed: nothing may be assumed lost yet), then move the
clock `--clock-offset` seconds ahead and poll `--polls` times, advancing it
`--step` seconds per poll. It prints one JSON line per phase (restored, early,
final) with the state of every order and position, and the alerts. `--kill-at`
works here too: a crash during recovery.

Exit codes: 137 killed at the kill point; 0 done; 3 the kill point was never
reached (the test fails on it); anything else is a crash of the core itself.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from triplegain_fsm import ExecutionCore, TradeProposal
from triplegain_fsm.config import Config
from triplegain_fsm.kraken import retry

KILLED = 137
NOT_REACHED = 3
SYMBOL = "BTC/USD"
STOP_LOSS = Decimal("41000")
TAKE_PROFIT = Decimal("48000")
MODIFIED_STOP = Decimal("41500")
LIMIT_ENTRY = Decimal("42900")
SIZE_USD = Decimal("4300")
LEVERAGE = 2
MAX_POLLS = 20


class OffsetClock:
    """The core's clock: real time plus an offset this process moves forward.

    The offset is kept in a file beside the store, so the next process's clock starts where
    this one's stopped: like a wall clock, it never runs backwards across a crash and restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = float(path.read_text()) if path.exists() else 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.path.write_text(repr(self.offset))


def die(spec: str) -> None:
    sys.stderr.write(f"scripted_trade: killed at {spec}\n")
    sys.stderr.flush()
    os._exit(KILLED)


class KillSwitch:
    """Wraps one method of this process's core so that its N-th call dies before or after the real one."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.calls = 0
        if spec == "none":
            self.method, self.nth, self.when = "none", 0, "never"
            return
        target, _, when = spec.partition(":")
        method, _, nth = target.partition("#")
        if method not in ("add_order", "cancel_order", "amend_order", "protected") or when not in ("before", "after"):
            raise SystemExit(f"bad --kill-at {spec!r}")
        self.method, self.nth, self.when = method, int(nth or 1), when

    def install(self, core: ExecutionCore) -> None:
        if self.method == "none":
            return
        if self.method == "protected":
            self._wrap_finish(core)
            return
        original = getattr(core.client, self.method)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            hit = self.calls == self.nth
            if hit and self.when == "before":
                die(self.spec)
            result = original(*args, **kwargs)
            if hit and self.when == "after":
                die(self.spec)
            return result

        setattr(core.client, self.method, wrapper)  # the instance only: the library is untouched

    def _wrap_finish(self, core: ExecutionCore) -> None:
        tracker = core.positions
        original: Callable[..., None] = tracker._finish

        def finish(unit: Any, position: Any, step: Any) -> None:
            if step is not None and step.action == "protected" and position.state == "UNPROTECTED":
                self.calls += 1
                if self.calls == self.nth:
                    die(self.spec)  # inside the unit, before its commit: the PROTECTED mark is lost
            original(unit, position, step)

        tracker._finish = finish  # type: ignore[method-assign]


def build_core(url: str, store: str, clock: OffsetClock) -> ExecutionCore:
    config = Config.from_dict({
        "exchange": {"mode": "live", "base_url": url, "account": "margin", "tier": "pro"},
        "storage": {"path": store},
        "symbols": {SYMBOL: {"max_leverage": 5}},
        "orders": {"poll_interval_seconds": 1.0},
    })
    return ExecutionCore.from_settings(config, environ=os.environ, clock=clock)


def poll_until(core: ExecutionCore, clock: OffsetClock, done: Callable[[], bool], what: str) -> None:
    for _ in range(MAX_POLLS):
        if done():
            return
        clock.advance(1.0)
        core.poll_once()
    if not done():
        raise RuntimeError(f"scripted trade: {what} not reached after {MAX_POLLS} polls")


def trade(args: argparse.Namespace) -> int:
    kill = KillSwitch(args.kill_at)
    clock = OffsetClock(Path(args.store + ".clock"))
    core = build_core(args.url, args.store, clock)
    kill.install(core)
    limit = args.scenario == "limit"
    result = core.orders.execute_trade(TradeProposal(
        symbol=SYMBOL, side="buy", size_usd=SIZE_USD, entry_price=LIMIT_ENTRY if limit else None,
        stop_loss=STOP_LOSS, take_profit=TAKE_PROFIT, leverage=LEVERAGE))
    if not result.success:
        raise RuntimeError(f"scripted trade: entry failed: {result.error_message}")
    pid = result.position_id
    assert pid is not None
    entry = result.order

    def state() -> str:
        position = core.positions.get_position(pid)
        assert position is not None
        return position.state

    if limit:
        return NOT_REACHED if kill.method != "none" else 0  # the entry rests until the test moves the price
    poll_until(core, clock, lambda: entry.state == "FILLED" and state() == "PROTECTED", "entry filled and PROTECTED")
    if args.scenario == "market":
        core.positions.modify_position(pid, stop_loss=MODIFIED_STOP)
        core.positions.close_position(pid, reason="scripted close")
        poll_until(core, clock, lambda: state() == "CLOSED", "position CLOSED")
    core.close()
    return NOT_REACHED if kill.method != "none" else 0


def snapshot(core: ExecutionCore, phase: str) -> dict[str, Any]:
    store = core.store
    return {
        "phase": phase,
        "orders": {o.id: {"role": o.role.value, "state": o.state, "txid": o.external_id}
                   for o in store.load_orders()},
        "positions": {p.id: {"state": p.state, "size": format(p.size, "f")} for p in store.load_positions()},
        "alerts": [{"alert_type": a["alert_type"], "position_id": a["position_id"], "order_id": a["order_id"]}
                   for a in store.alerts()],
    }


def recover(args: argparse.Namespace) -> int:
    kill = KillSwitch(args.kill_at)
    clock = OffsetClock(Path(args.store + ".clock"))
    core = build_core(args.url, args.store, clock)
    kill.install(core)
    print(json.dumps(snapshot(core, "restored")), flush=True)
    for _ in range(args.early_polls):
        core.poll_once()
    print(json.dumps(snapshot(core, "early")), flush=True)
    clock.advance(args.clock_offset)
    for _ in range(args.polls):
        clock.advance(args.step)
        core.poll_once()
    print(json.dumps(snapshot(core, "final")), flush=True)
    core.close()
    return NOT_REACHED if kill.method != "none" else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--mode", choices=("trade", "recover"), default="trade")
    parser.add_argument("--scenario", choices=("market", "limit", "partial"), default="market")
    parser.add_argument("--kill-at", default="none")
    parser.add_argument("--early-polls", type=int, default=1)
    parser.add_argument("--clock-offset", type=float, default=120.0)
    parser.add_argument("--polls", type=int, default=6)
    parser.add_argument("--step", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # The library's own test switch: client waits (pacer, retry backoff) return at once. The paper
    # exchange enforces no rate limit, and waiting would only make the suite slow.
    retry.set_testing(True)
    return trade(args) if args.mode == "trade" else recover(args)


if __name__ == "__main__":
    sys.exit(main())
