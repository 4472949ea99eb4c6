"""Which paper account a store trades on, checked before a paper-mode core starts.

The core's store and the paper exchange's state file are two files. Restored apart -- a
store from a backup beside a fresh (or another) paper account -- reconciliation would
compare the store's open orders and positions with an exchange that never saw them:
drift alerts, orders "not found", positions closed into nothing. So the store remembers
the paper account's id (`meta.paper_account_id`), a new store adopts the account it first
runs on, and a store holding unfinished orders or positions refuses any other account.

`check` only reads (both files are opened read-only, nothing is created): a refused start
leaves both files exactly as they were.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from triplegain_fsm.config import Config
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.store import Store

META_KEY = "paper_account_id"
_UNFINISHED_ORDERS = "SELECT COUNT(*) FROM orders WHERE state NOT IN ('FILLED', 'CANCELLED', 'EXPIRED', 'REJECTED')"
_OPEN_POSITIONS = "SELECT COUNT(*) FROM positions WHERE state != 'CLOSED'"


def _peek_store(path: str) -> tuple[str | None, int, int]:
    """(paper account id, unfinished orders, open positions) of an existing store, read-only."""
    from triplegain_fsm.paper.persist import connect_read_only

    conn = connect_read_only(path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone() \
            if "meta" in tables else None
        orders = conn.execute(_UNFINISHED_ORDERS).fetchone()[0] if "orders" in tables else 0
        positions = conn.execute(_OPEN_POSITIONS).fetchone()[0] if "positions" in tables else 0
        return (None if row is None else str(row[0])), int(orders), int(positions)
    finally:
        conn.close()


def check(config: Config) -> None:
    """Refuse (ConfigError) a store with open business that names another paper account, or none."""
    store_path = config.storage.path
    if store_path == ":memory:" or not Path(store_path).is_file():
        return
    state_file = config.paper.state_file(store_path)
    try:
        remembered, orders, positions = _peek_store(store_path)
    except sqlite3.Error as exc:
        raise ConfigError(f"storage.path: cannot read the store {store_path}: {exc}") from exc
    if not orders and not positions:
        return
    from triplegain_fsm.paper.persist import read_account_id  # paper/ loads only in paper mode, as in core

    current = read_account_id(state_file) if state_file is not None else None
    if remembered is not None and remembered == current:
        return
    holding = f"holds {orders} unfinished orders and {positions} open positions"
    used = (f"was used with paper exchange {remembered}" if remembered
            else "names no paper exchange (it predates this check)")
    if state_file is None:
        now = "is not kept (paper.state_path is ':memory:' or the store is in memory): a fresh, empty one"
    elif current is None:
        now = f"state file {state_file} is missing: a fresh, empty one would be created"
    else:
        now = f"state file {state_file} is account {current}"
    raise ConfigError(
        f"the store {store_path} {holding} and {used}, but the paper exchange's {now}. Starting would "
        "reconcile those orders and positions against an exchange that never saw them. Fix: put back the "
        "paper state file that belongs to this store (back up and restore the two files together), or start "
        f"afresh by deleting both {store_path} and {state_file or 'the paper state'} (or point storage.path "
        "at a new file)."
    )


def adopt(store: Store, paper: Any) -> None:
    """A store that passed `check` remembers the paper account it now trades on."""
    account = getattr(paper, "account_id", None)
    if account is not None and store.get_meta(META_KEY) != account:
        store.set_meta(META_KEY, account)
