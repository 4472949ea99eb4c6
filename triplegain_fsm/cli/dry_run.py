"""A reconciliation that changes nothing: it runs on copies, and no exchange write is sent.

The store (and, in paper mode, the paper exchange's state file) is copied with SQLite's
backup API into a temporary directory, from a read-only connection that can change
nothing and leave no -wal/-shm file beside the original. The core built on the copies
reads the exchange as a real reconciliation does, but every private call that could
change the account (AddOrder, AmendOrder, CancelOrder, CancelAll, CancelAllOrdersAfter,
...) is recorded and refused with `DryRunRefused`, a definite "not executed" answer. So
the report says what reconciliation found and which calls it would start with; what
it would do after those calls' answers is not known, and not shown. Its alerts are about
the copies: the core's log lines are not shown while it runs, and nothing is sent out
(notifications, heartbeat and the metrics server are off for it).
"""
from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from triplegain_fsm.config import Config
from triplegain_fsm.kraken.client import READ_METHODS
from triplegain_fsm.kraken.errors import OrderRejected

REFUSED = "dry run: not sent"
# private calls that only read; CancelAllOrdersAfter is retry-safe but arms a timer, so it is a write here
READS = READ_METHODS - {"CancelAllOrdersAfter"}


class DryRunRefused(OrderRejected):
    """A dry run does not send this call: certainly not executed."""


class WriteRecorder:
    """Stands in for `KrakenClient.call`: reads go through, a private write is recorded and refused."""

    def __init__(self, call: Callable[..., dict[str, Any]]) -> None:
        self._call = call
        self.would_send: list[dict[str, Any]] = []

    def __call__(self, method: str, build: Callable[[], tuple[Any, bool]], **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("private") and method not in READS:
            params, _ = build()
            self.would_send.append({"method": method, "params": {k: str(v) for k, v in dict(params).items()}})
            raise DryRunRefused(REFUSED, endpoint=method)
        return self._call(method, build, **kwargs)


def block_writes(client: Any) -> WriteRecorder:
    """From now on `client` sends no private write; returns what records them."""
    recorder = WriteRecorder(client.call)
    client.call = recorder    # an instance attribute: this one client only, for this dry run
    return recorder


def without_refusals(messages: list[str]) -> list[str]:
    """A report's errors minus the dry run's own refusals (they are listed in would_send)."""
    return [m for m in messages if REFUSED not in m]


def copy_database(source: Path, target: Path) -> None:
    """`source` copied page by page into `target`, the source opened read-only (nothing created beside it)."""
    from triplegain_fsm.paper.persist import connect_read_only

    src = connect_read_only(source)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


@contextmanager
def on_copies(config: Config) -> Iterator[Config]:
    """`config` pointed at temporary copies of its store and (paper mode) its paper state; removed after."""
    with tempfile.TemporaryDirectory(prefix="triplegain-dry-run-") as tmp:
        store = Path(config.storage.path)
        store_copy = Path(tmp) / store.name
        copy_database(store, store_copy)
        paper = config.paper
        state = paper.state_file(str(store)) if config.exchange.mode == "paper" else None
        if state is not None:
            state_copy = Path(tmp) / "paper-state-copy.sqlite"
            copy_database(Path(state), state_copy)
            paper = attrs.evolve(paper, state_path=str(state_copy))
        copy = attrs.evolve(config, storage=attrs.evolve(config.storage, path=str(store_copy)), paper=paper)
        with _quiet_logs():
            yield _silent(copy)


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """The core's log lines (alerts among them) are about the copies: not shown while the dry run lasts."""
    logger = logging.getLogger("triplegain_fsm")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _silent(config: Config) -> Config:
    """A dry run's alerts are never sent out: no notifications, heartbeat or metrics server."""
    changes: dict[str, Any] = {}
    for section, field, off in (("notifications", "urls", ()), ("heartbeat", "url", None), ("metrics", "port", None)):
        current = getattr(config, section, None)
        if current is not None and hasattr(current, field):
            changes[section] = attrs.evolve(current, **{field: off})
    return attrs.evolve(config, **changes)
