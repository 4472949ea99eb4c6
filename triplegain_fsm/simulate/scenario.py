"""The seeded scenario: what happens at each step, drawn from one `random.Random(seed)`.

Pure choices, no side effects: the runner asks, the generator answers with an
`Action` (a kind and its parameters). Weights are per step; a storm is one fault
class queued for several calls, or for every method ("*"). `setup(seed)` draws, from
the seed alone, what the run is: its account (margin or spot) and its order entry
(REST or the WebSocket).
"""
from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.simulate.crash import IN_RECOVERY
from triplegain_fsm.simulate.crash import KINDS as CRASH_KINDS
from triplegain_fsm.simulate.faults import FAULT_CLASSES, METHODS
from triplegain_fsm.simulate.ws_entry import WS_ERRORS, WS_FAULTS, WS_METHODS

WEIGHTS = {
    "tick": 34, "poll": 14, "deliver": 14, "propose": 9, "close": 2, "modify": 3, "trail": 3,
    "rest_fault": 7, "stream_fault": 4, "human": 2,
}
STREAM_FAULTS = ("drop", "gap", "silence", "duplicate", "reconnect", "reorder")
HUMAN_ACTIONS = ("cancel_stop", "cancel_entry", "foreign_order")
MARGIN_HUMAN_ACTIONS = (*HUMAN_ACTIONS, "foreign_position", "close_foreign")   # a position opened by hand
FOREIGN_VOLUMES = ("0.05", "0.2", "0.5", "1.5")      # ETH a human trades by hand
SPOT_SHARE, WEBSOCKET_SHARE = 0.3, 0.3
STEP_SECONDS = (0.5, 1.0, 1.0, 2.0, 2.0, 5.0, 10.0, 30.0)


@attrs.frozen
class Action:
    kind: str
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Setup:
    account: str = "margin"          # margin | spot
    order_entry: str = "rest"        # rest | websocket


def setup(seed: int) -> Setup:
    """What kind of run a seed is, drawn apart from the steps (its own generator)."""
    rng = random.Random(seed * 7919 + 0xACC)
    account = "spot" if rng.random() < SPOT_SHARE else "margin"
    return Setup(account, "websocket" if rng.random() < WEBSOCKET_SHARE else "rest")


class Scenario:
    def __init__(self, seed: int, crash_rate: float, account: str = "margin", order_entry: str = "rest") -> None:
        self.rng = random.Random(seed)
        self.crash_rate = crash_rate
        self.account = account
        self.order_entry = order_entry
        self.price = Decimal("43000")

    def seconds(self) -> float:
        return self.rng.choice(STEP_SECONDS)

    def next(self) -> Action:
        rng = self.rng
        if rng.random() < self.crash_rate:
            return self.crash()
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        return getattr(self, f"_{kind}")()

    def crash(self) -> Action:
        rng = self.rng
        draw = rng.random()
        if draw < 0.3:
            return Action("crash", {"at": "between_steps"})
        if draw < 0.45:   # dies between steps; the next process dies again while it recovers
            return Action("crash", {"at": IN_RECOVERY, "inner": rng.choice(CRASH_KINDS),
                                    "countdown": rng.randint(1, 4)})
        return Action("crash", {"at": rng.choice(CRASH_KINDS), "countdown": rng.randint(1, 6)})

    def _tick(self) -> Action:
        rng = self.rng
        move = Decimal(str(round(rng.gauss(0, 0.004), 5)))
        if rng.random() < 0.05:
            move = Decimal(str(round(rng.choice((-1, 1)) * rng.uniform(0.02, 0.06), 4)))   # a jump
        price = (self.price * (1 + move)).quantize(Decimal("0.1"))
        self.price = min(max(price, Decimal("30000")), Decimal("60000"))
        liquidity = None if rng.random() < 0.5 else Decimal(str(rng.choice((0.005, 0.01, 0.03, 0.1))))
        return Action("tick", {"price": self.price, "liquidity": liquidity})

    def _poll(self) -> Action:
        return Action("poll")

    def _deliver(self) -> Action:
        return Action("deliver", {"count": None if self.rng.random() < 0.7 else self.rng.randint(1, 3)})

    def _propose(self) -> Action:
        rng = self.rng
        # spot: mostly buys; a sell entry (a short) needs margin, and the core must refuse it clearly
        side = rng.choice(("buy", "sell") if self.account == "margin" else ("buy", "buy", "buy", "sell"))
        sign = 1 if side == "buy" else -1
        price = self.price
        stop = (price * (1 - sign * Decimal(str(rng.uniform(0.01, 0.05))))).quantize(Decimal("1"))
        take = (price * (1 + sign * Decimal(str(rng.uniform(0.01, 0.06))))).quantize(Decimal("1"))
        entry = None
        if rng.random() < 0.35:   # a limit entry, resting a little away from the market
            entry = (price * (1 - sign * Decimal(str(rng.uniform(0.0, 0.01))))).quantize(Decimal("1"))
        return Action("propose", {"side": side, "size_usd": Decimal(rng.choice((500, 1000, 2500, 4300, 8000))),
                                  "entry": entry, "stop": stop, "take": take,
                                  "leverage": 1 if self.account == "spot" else rng.randint(2, 5)})

    def _close(self) -> Action:
        return Action("close", {"pick": self.rng.random()})

    def _modify(self) -> Action:
        rng = self.rng
        return Action("modify", {"pick": rng.random(), "stop_pct": rng.uniform(0.005, 0.04),
                                 "take_pct": rng.uniform(0.01, 0.06) if rng.random() < 0.5 else None})

    def _trail(self) -> Action:
        # distances change on live trails: a tighter one must move the stop at once (tests/simulate/test_found.py)
        return Action("trail", {"pick": self.rng.random(), "distance": self.rng.choice((1, 2, 3, 5))})

    def _rest_fault(self) -> Action:
        rng = self.rng
        if self.order_entry == "websocket" and rng.random() < 0.4:   # a fault of the socket's order entry
            return Action("ws_fault", {"fault": rng.choice(WS_FAULTS), "method": rng.choice(WS_METHODS),
                                       "error": rng.choice(WS_ERRORS), "times": rng.choice((1, 1, 1, 3))})
        storm = rng.random() < 0.3
        return Action("rest_fault", {"fault": rng.choice(FAULT_CLASSES), "method": rng.choice(METHODS),
                                     "times": rng.randint(3, 8) if storm else 1, "storm": storm})

    def _stream_fault(self) -> Action:
        rng = self.rng
        return Action("stream_fault", {"fault": rng.choice(STREAM_FAULTS), "lost": rng.randint(1, 3),
                                       "seconds": rng.choice((5.0, 15.0, 40.0)), "pick": rng.random()})

    def _human(self) -> Action:
        rng = self.rng
        actions = MARGIN_HUMAN_ACTIONS if self.account == "margin" else HUMAN_ACTIONS
        return Action("human", {"what": rng.choice(actions), "pick": rng.random(),
                                "side": rng.choice(("buy", "sell")), "volume": Decimal(rng.choice(FOREIGN_VOLUMES))})
