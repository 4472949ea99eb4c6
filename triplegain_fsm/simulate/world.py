"""The simulated world: one paper exchange that keeps running, and the cores that live and die on it.

`World` owns the fake clock, the paper exchange (its clock is the same fake clock)
and the SQLite file. `boot()` builds a fresh core on that file exactly as a restarted
process would (restore from the store), mounts the exchange behind the crash switch,
attaches the simulated stream (and, for `exchange.order_entry: websocket`, the real
`WsOrderEntry` on the simulated socket, `ws_entry`) and runs the recovery path `start()` runs, without its
threads: `sync_with_exchange()`. `abandon()` drops a core the way a killed process
does: no HTTP, no stop(); its SQLite connection is closed (uncommitted work is gone)
and its models are detached from the process-wide machines.

A margin account holds dollars only; a spot account holds dollars and coins, so it
can sell first (a short on spot sells coins it holds and buys them back). A process
may die inside `boot()` too (the crash switch armed for its recovery); what it built
is then abandoned like any dead process's.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from triplegain_fsm.config import Config
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.errors import KrakenError
from triplegain_fsm.kraken.ws_orders import WsOrderEntry
from triplegain_fsm.machines.order_machine import ORDER_KIND
from triplegain_fsm.machines.position_machine import POSITION_KIND
from triplegain_fsm.paper import PaperExchange, paper_from_config
from triplegain_fsm.paper.transport import mount
from triplegain_fsm.simulate.crash import CrashSwitch
from triplegain_fsm.simulate.stream import SimStream
from triplegain_fsm.simulate.ws_entry import SimSocket
from triplegain_fsm.store import Store
from triplegain_fsm.testing import FakeClock, paper_config

log = logging.getLogger(__name__)
START_TIME = 1_700_000_000.0      # a fixed epoch: the same seed, the same timestamps
BALANCE = "1000000"
SPOT_COINS = "20"                 # BTC a spot account holds at the start (sell entries sell them)


def _no_wait(seconds: float) -> None:
    """The pacer's waits are bookkeeping only (as in paper mode)."""


def sim_config(store_path: Path, account: str = "margin", order_entry: str = "rest") -> Config:
    balances = {"ZUSD": BALANCE} if account == "margin" else {"ZUSD": BALANCE, "XXBT": SPOT_COINS}
    return paper_config(
        store_path, account,
        exchange={"account": account, "stream": "websocket", "submit_deadline_seconds": 5,
                  "order_entry": order_entry},
        paper={"balances": balances, "prices": {"BTC/USD": "43000"}, "state_path": ":memory:"},
        safety={"reconcile_interval_seconds": 120},
    )


class World:
    def __init__(self, store_path: Path, *, seed: int, clock: FakeClock, account: str = "margin",
                 order_entry: str = "rest") -> None:
        self.clock = clock
        self.config = sim_config(store_path, account, order_entry)
        self.paper: PaperExchange = paper_from_config(self.config, clock=self.clock, seed=seed)
        self.switch = CrashSwitch()
        self.core: ExecutionCore | None = None
        self.stream: SimStream | None = None
        self.foreign: set[str] = set()      # txids a human placed at the exchange (not the core's), margin ones too
        self.boots = 0

    def boot(self, on_core: Callable[[ExecutionCore], None] | None = None) -> ExecutionCore:
        """A new process on the same store and the same exchange; recovery as `start()` does it.
        `on_core` sees the core before its recovery runs (to subscribe to its bus)."""
        config = self.config
        client = KrakenClient(self.paper.api_key, self.paper.api_secret, config.exchange.base_url,
                              tier=config.exchange.tier, timeout=config.exchange.timeout_seconds,
                              deadline_seconds=config.exchange.submit_deadline_seconds, sleep=_no_wait,
                              clock=self.clock)
        mount(client.session, config.exchange.base_url, self.switch.handler(self.paper.api.handle))
        store = Store(config.storage.path)
        self.switch.wrap_store(store)
        try:
            core = ExecutionCore(config, client, store, paper=self.paper, clock=self.clock)
        except BaseException:   # died while restoring: nothing of it is left running
            store.close()
            raise
        self.core = core
        self.stream = SimStream(core, self.clock)
        if config.exchange.order_entry == "websocket":   # REST whenever the socket cannot take the order
            timeout = min(config.exchange.timeout_seconds, float(config.exchange.submit_deadline_seconds))  # float-ok
            core.orders.entry = WsOrderEntry(SimSocket(self.stream, self.paper, self.switch), client,
                                             request_timeout=timeout)
        self.boots += 1
        if on_core is not None:
            on_core(core)
        self.recover()
        return core

    def recover(self) -> None:
        assert self.core is not None and self.stream is not None
        try:
            self.core.sync_with_exchange()
        except KrakenError as exc:   # as start(): the poller retries
            log.info("simulated start-up reconciliation failed (%s)", exc)
        self.stream.reconnect()

    def abandon(self) -> None:
        """The process is dead: nothing more of it runs."""
        core, self.core = self.core, None
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if core is None:
            return
        for order in list(core.orders.working_orders()):
            ORDER_KIND.detach(order)
        for position in list(core.positions.get_open_positions()):
            POSITION_KIND.detach(position)
        try:
            core.store.close()
        except Exception:  # noqa: BLE001 - a dead process's file handle: nothing to save
            log.debug("closing an abandoned store failed", exc_info=True)
