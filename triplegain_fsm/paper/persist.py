"""The paper exchange's whole state in one SQLite file, so a paper account lives across restarts.

A live Kraken account outlives the bot process; so must a paper one, or a restarted core
reconciles its store against an empty exchange (drift alerts, "EOrder:Invalid order",
positions stuck in CLOSING). `StateFile` keeps everything the engine knows: balances and
holds, every order (open and finished, with fills, triggers, amendments, conditional
closes), every trade, margin position rows, the id generator (txids and trade ids never
repeat), the dead man's switch, pair and system statuses, last prices and Ticker figures,
and the time of a `ManualClock`.

When it is written. The engine's lock is wrapped (`wrap`): when the outermost holder lets
go -- after every operation, before any observer hears of it and before the answer leaves
-- the records that changed are written in ONE transaction. "Changed" is found without
scanning the book: the engine notes the orders an operation may touch (`State.touch`), and
their fingerprints are compared with what was last written; new orders and trades are the
tail of their insertion-ordered dicts. An operation that changed nothing costs a few
comparisons and no commit.

The trade-off. A tick that moves only the market -- last price, Ticker figures, the tick
counter, the per-tick liquidity budget, a ManualClock -- stays in memory and is written
with the next real change (an order placed, filled, triggered, moved, cancelled or expired,
a balance, a status) and on `close`. A crash can therefore lose the prices of the ticks since
the last real change (the next tick brings a fresh one), never an order, a fill or a balance
a client was told about. The file uses WAL with synchronous=NORMAL like the core's store:
durable when the process dies; a power cut may lose the last transactions of both.

One writer. `attach` stamps the file with a writer token, checked in every transaction: a
second exchange (or process) opening the same file takes it over, and the first one's next
write fails loudly instead of interleaving two accounts' histories.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from array import array
from collections.abc import Callable, Iterable
from decimal import Decimal
from enum import Enum
from operator import attrgetter
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import attrs

from triplegain_fsm.errors import ConfigError
from triplegain_fsm.paper.clock import ManualClock
from triplegain_fsm.paper.errors import KrakenRejection
from triplegain_fsm.paper.ledger import Ledger
from triplegain_fsm.paper.margin import MarginPosition, PositionBook
from triplegain_fsm.paper.orders import PaperOrder, TradeRecord
from triplegain_fsm.paper.pairs import PairRegistry, PairSpec
from triplegain_fsm.paper.state import State, TickerStats

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS orders (txid TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL,"
    " pair TEXT NOT NULL, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS trades (n INTEGER PRIMARY KEY, txid TEXT NOT NULL UNIQUE, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS positions (n INTEGER PRIMARY KEY, posid TEXT NOT NULL UNIQUE,"
    " status TEXT NOT NULL, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS balances (asset TEXT PRIMARY KEY, balance TEXT NOT NULL, hold TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS issued (id TEXT PRIMARY KEY)",
)


class PaperStateError(RuntimeError):
    """The state file cannot take this write (closed, or taken over by another exchange)."""


# --------------------------------------------------------------------------- records <-> JSON

Coder = Callable[[Any, PairRegistry], Any]


def _same(value: Any, registry: PairRegistry | None = None) -> Any:
    return value


def _pair(value: str, registry: PairRegistry) -> PairSpec:
    try:
        return registry.resolve(value)
    except KrakenRejection:
        raise ConfigError(f"paper state names pair {value!r}, which this paper exchange does not list") from None


def _coders(tp: Any) -> tuple[Callable[[Any], Any], Coder]:
    """(encode, decode) for one type hint: Decimal as exact text, enums by value, pairs by id."""
    origin = get_origin(tp)
    if origin in (Union, UnionType):
        args = [a for a in get_args(tp) if a is not NoneType]
        assert len(args) == 1, tp
        enc, dec = _coders(args[0])
        return (lambda v: None if v is None else enc(v)), (lambda v, r: None if v is None else dec(v, r))
    if tp is Decimal:
        return str, lambda v, r: Decimal(v)
    if tp is PairSpec:
        return attrgetter("id"), _pair
    if isinstance(tp, type) and issubclass(tp, Enum):
        enum = tp
        return attrgetter("value"), lambda v, r: enum(v)
    if isinstance(tp, type) and attrs.has(tp):
        codec = Codec(tp)
        return codec.encode, codec.decode
    if origin in (tuple, list):
        items: tuple[Any, ...] = get_args(tp)
        if origin is tuple and not (len(items) == 2 and items[1] is Ellipsis):
            pairs = [_coders(a) for a in items]
            return (lambda v: [e(x) for (e, _), x in zip(pairs, v, strict=True)],
                    lambda v, r: tuple(d(x, r) for (_, d), x in zip(pairs, v, strict=True)))
        enc, dec = _coders(items[0])
        box: Callable[[Iterable[Any]], Any] = tuple if origin is tuple else list
        return (lambda v: [enc(x) for x in v]), (lambda v, r: box(dec(x, r) for x in v))
    if tp in (int, float, str, bool):
        return _same, _same
    raise TypeError(f"paper.persist cannot store a {tp!r}")


class Codec:
    """An attrs record <-> a JSON-ready dict, field by field from its type hints (exact round trip)."""

    def __init__(self, cls: type, skip: tuple[str, ...] = ()) -> None:
        hints = get_type_hints(cls)
        self.cls = cls
        self.fields = [(f.name, *_coders(hints[f.name])) for f in attrs.fields(cls) if f.name not in skip]

    def encode(self, record: Any) -> dict[str, Any]:
        return {name: enc(getattr(record, name)) for name, enc, _ in self.fields}

    def decode(self, data: dict[str, Any], registry: PairRegistry) -> Any:
        return self.cls(**{name: dec(data[name], registry) for name, _, dec in self.fields if name in data})


# An order's trade ids are not stored with it (a long-lived order would rewrite a growing list on every
# fill): they are the trades table's `ordertxid`s, in order, and are rebuilt from it on load.
ORDERS = Codec(PaperOrder, skip=("trades",))
TRADES, POSITIONS, STATS = Codec(TradeRecord), Codec(MarginPosition), Codec(TickerStats)
_FP_FIELDS = [f.name for f in attrs.fields(PaperOrder) if f.name not in ("wake", "trades", "misc")]
_fields_of = attrgetter(*_FP_FIELDS)


def fingerprint(order: PaperOrder) -> tuple[Any, ...]:
    """Everything an operation can change on an order (wake levels follow from the rest)."""
    return (_fields_of(order), len(order.trades), len(order.misc))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _newest(records: dict[str, Any], count: int) -> list[Any]:
    """The last `count` values of an insertion-ordered dict, oldest first, without walking the rest."""
    if count <= 0:
        return []
    newest = []
    for value in reversed(records.values()):
        newest.append(value)
        if len(newest) == count:
            break
    newest.reverse()
    return newest


def dump(state: State) -> dict[str, Any]:
    """Everything a state file keeps, as plain data (two states are the same account iff equal)."""
    clock = state.clock() if isinstance(state.clock, ManualClock) else None
    return {
        "orders": [{**ORDERS.encode(o), "trades": list(o.trades)} for o in state.orders.values()],
        "live": {p: [o.txid for o in orders] for p, orders in state.live.items()},
        "by_cl_ord_id": {k: o.txid for k, o in state.by_cl_ord_id.items()},
        "timed": [o.txid for o in state.timed],
        "trades": [TRADES.encode(t) for t in state.trades.values()],
        "positions": [POSITIONS.encode(r) for r in state.positions.all_rows()],
        "balances": {a: str(v) for a, v in state.ledger.balances().items()},
        "holds": {a: str(v) for a, v in state.ledger.holds().items()},
        "ids": state.ids.snapshot(), "last_seq": state.last_seq, "dead_man_at": state.dead_man_at,
        "system_status": state.system_status, "pair_status": dict(state.pair_status),
        "pending_closes": [o.txid for o in state.pending_closes], "clock": clock,
        "prices": {p: str(v) for p, v in state.prices.items()}, "tick_count": dict(state.tick_count),
        "budget": {p: None if v is None else str(v) for p, v in state.budget.items()},
        "stats": {p: STATS.encode(v) for p, v in state.stats.items()},
    }


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A connection that cannot change the file or leave -wal/-shm files beside it.

    A cleanly closed WAL database has no -wal file: everything is in the main file, which is then
    read as immutable (no locks, nothing created). With a -wal (a writer crashed or is running),
    a plain read-only connection reads through it.
    """
    uri = Path(path).absolute().as_uri()
    clean = not Path(f"{path}-wal").exists()
    return sqlite3.connect(uri + ("?immutable=1" if clean else "?mode=ro"), uri=True)


def read_account_id(path: str | Path) -> str | None:
    """The account id stored in a state file, read-only (None if there is no such file or id)."""
    if not Path(path).is_file():
        return None
    try:
        conn = connect_read_only(path)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'account_id'").fetchone()
        return None if row is None else str(row[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


# --------------------------------------------------------------------------- the file


class StateFile:
    """One paper account's state file. It takes no lock of its own: every call runs under the engine's."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        for sql in _TABLES:
            self._conn.execute(sql)
        version = self._meta("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            self._conn.close()
            raise ConfigError(f"paper state {self.path}: written by a newer triplegain-fsm (schema {version})")
        self.account_id = self._meta("account_id")
        self._writer = uuid.uuid4().hex
        self._state: State | None = None
        self._closed = False
        self._broken = False
        # the baseline: what the file holds, as of the last write (see _remember)
        self._fp: dict[str, tuple[Any, ...]] = {}
        self._n_orders = self._n_trades = self._n_rows = 0
        self._open_rows: list[tuple[int, MarginPosition]] = []
        self._balances: dict[str, Decimal] = {}
        self._holds: dict[str, Decimal] = {}
        self._dead_man: float | None = None
        self._system = "online"
        self._pair_status: dict[str, str] = {}
        self._ticks_written = -1

    @property
    def is_new(self) -> bool:
        """True until an account has been written to the file."""
        return self.account_id is None

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- attach, wrap, close -----------------------------------------------------------------

    def attach(self, state: State) -> None:
        """Load the saved account into `state` (a new file is seeded with `state` as it is)."""
        self._state = state
        state.touched = []
        state.ids.track()
        if self.account_id is None:
            self.account_id = uuid.uuid4().hex
            self._write_all(state)
        else:
            self._load(state)
            self._transaction(lambda: self._put_meta("writer", self._writer), check_writer=False)
        self._remember(state)

    def wrap(self, lock: Any) -> Any:
        """The engine's lock, writing the changes when its outermost holder lets go (stands in for `lock`)."""
        return JournaledLock(lock, self)

    def close(self) -> None:
        """Write what is still only in memory (prices, Ticker figures, the clock) and close the file."""
        if self._closed:
            return
        try:
            state = self._state
            if state is not None:
                if self._broken:
                    self._write_all(state)
                else:
                    self.after_op()
                    self._transaction(lambda: self._put_blobs(state))
        finally:
            self._closed = True
            self._conn.close()

    # -- after every operation ----------------------------------------------------------------

    def after_op(self) -> None:
        """Write what the operation that just ended changed, in one transaction (nothing: no commit)."""
        state = self._state
        assert state is not None and state.touched is not None
        if self._broken and not self._closed:
            self._write_all(state)
            self._remember(state)
            return
        dirty: dict[str, PaperOrder] = {o.txid: o for o in _newest(state.orders, len(state.orders) - self._n_orders)}
        for order in state.touched:
            if order.txid not in dirty and fingerprint(order) != self._fp.get(order.txid):
                dirty[order.txid] = order
        state.touched.clear()
        trades = _newest(state.trades, len(state.trades) - self._n_trades)
        if not (dirty or trades or state.dead_man_at != self._dead_man or state.system_status != self._system
                or state.pair_status != self._pair_status):
            return
        if self._closed:
            raise PaperStateError(f"paper state {self.path} is closed: this change is not saved")
        try:
            self._transaction(lambda: self._write_changes(state, list(dirty.values()), trades))
        except BaseException:
            self._broken = True      # the next operation rewrites the whole state
            raise
        for txid, order in dirty.items():
            if order.is_live:
                self._fp[txid] = fingerprint(order)
            else:
                self._fp.pop(txid, None)
        self._n_orders, self._n_trades = len(state.orders), len(state.trades)
        self._dead_man, self._system, self._pair_status = state.dead_man_at, state.system_status, dict(
            state.pair_status)

    def _remember(self, state: State) -> None:
        """Take `state` as written: the baseline the next operation is compared with."""
        assert state.touched is not None
        state.touched.clear()
        state.ids.take_fresh()
        self._fp = {o.txid: fingerprint(o) for o in state.live_orders()}
        self._n_orders, self._n_trades = len(state.orders), len(state.trades)
        rows = state.positions.all_rows()
        self._n_rows, self._open_rows = len(rows), [(n, r) for n, r in enumerate(rows) if r.status == "open"]
        self._balances, self._holds = state.ledger.balances(), state.ledger.holds()
        self._dead_man, self._system, self._pair_status = state.dead_man_at, state.system_status, dict(
            state.pair_status)
        self._broken = False

    # -- writing ------------------------------------------------------------------------------

    def _transaction(self, body: Callable[[], None], *, check_writer: bool = True) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if check_writer and self._meta("writer") != self._writer:
                raise PaperStateError(f"paper state {self.path} was opened by another paper exchange since;"
                                      " this one no longer writes to it")
            body()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _put_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _put_orders(self, orders: Iterable[PaperOrder]) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO orders (txid, seq, status, pair, data) VALUES (?, ?, ?, ?, ?)",
            [(o.txid, o.seq, o.status, o.pair.id, _dumps(ORDERS.encode(o))) for o in orders])

    def _put_trades(self, trades: list[TradeRecord], first: int) -> None:
        self._conn.executemany("INSERT INTO trades (n, txid, data) VALUES (?, ?, ?)",
                               [(first + i, t.txid, _dumps(TRADES.encode(t))) for i, t in enumerate(trades)])

    def _put_rows(self, rows: Iterable[tuple[int, MarginPosition]]) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO positions (n, posid, status, data) VALUES (?, ?, ?, ?)",
                               [(n, r.posid, r.status, _dumps(POSITIONS.encode(r))) for n, r in rows])

    def _put_ledger(self, state: State, assets: Iterable[str]) -> None:
        ledger = state.ledger
        self._conn.executemany("INSERT OR REPLACE INTO balances (asset, balance, hold) VALUES (?, ?, ?)",
                               [(a, str(ledger.balance(a)), str(ledger.hold(a))) for a in assets])

    def _put_ids(self, state: State, issued: list[str]) -> None:
        self._conn.executemany("INSERT OR IGNORE INTO issued (id) VALUES (?)", [(i,) for i in issued])
        snapshot = state.ids.snapshot()
        version, internal, gauss = snapshot["rng"]
        self._put_meta("ids", _dumps({"rng": [version, None, gauss], "trade_number": snapshot["trade_number"]}))
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('ids_rng', ?)",
                           (array("I", internal).tobytes(),))      # 625 words: 2.5 KB, no JSON

    def _put_blobs(self, state: State, *, market: bool = True) -> None:
        """The engine's scalars (one row, rewritten with every change) and the market figures (one row,
        rewritten when ticks came since it was last written)."""
        clock = state.clock() if isinstance(state.clock, ManualClock) else None
        self._put_meta("engine", _dumps({
            "last_seq": state.last_seq, "dead_man_at": state.dead_man_at, "system_status": state.system_status,
            "pair_status": state.pair_status, "pending_closes": [o.txid for o in state.pending_closes],
            "clock": clock,
        }))
        ticks = sum(state.tick_count.values())
        if not market and ticks == self._ticks_written:
            return
        self._ticks_written = ticks
        self._put_meta("market", _dumps({
            "prices": {p: str(v) for p, v in state.prices.items()},
            "tick_count": state.tick_count,
            "budget": {p: None if v is None else str(v) for p, v in state.budget.items()},
            "stats": {p: STATS.encode(s) for p, s in state.stats.items()},
        }))

    def _write_changes(self, state: State, orders: list[PaperOrder], trades: list[TradeRecord]) -> None:
        self._put_orders(orders)
        if trades:
            self._put_trades(trades, self._n_trades)
            rows = state.positions.all_rows()
            changed = [*self._open_rows, *enumerate(rows[self._n_rows:], start=self._n_rows)]
            self._put_rows(changed)
            self._n_rows, self._open_rows = len(rows), [(n, r) for n, r in changed if r.status == "open"]
        balances, holds = state.ledger.balances(), state.ledger.holds()
        if balances != self._balances or holds != self._holds:
            self._put_ledger(state, [a for a in balances if
                                     balances[a] != self._balances.get(a) or holds[a] != self._holds.get(a)])
            self._balances, self._holds = balances, holds
        issued = state.ids.take_fresh()
        if issued:
            self._put_ids(state, issued)
        self._put_blobs(state, market=False)

    def _write_all(self, state: State) -> None:
        """The whole state, replacing whatever the file held (a new account, or recovery after a failed write)."""
        def body() -> None:
            for table in ("orders", "trades", "positions", "balances"):
                self._conn.execute(f"DELETE FROM {table}")
            self._put_meta("schema_version", str(SCHEMA_VERSION))
            assert self.account_id is not None
            self._put_meta("account_id", self.account_id)
            self._put_meta("writer", self._writer)
            self._put_orders(state.orders.values())
            self._put_trades(list(state.trades.values()), 0)
            self._put_rows(enumerate(state.positions.all_rows()))
            self._put_ledger(state, state.ledger.assets())
            fresh = state.ids.take_fresh()      # amend ids live only here
            self._put_ids(state, [*fresh, *state.orders, *state.trades, *(r.posid for r in state.positions.all_rows())])
            self._put_blobs(state)
        self._transaction(body, check_writer=self.account_id is not None and self._meta("account_id") is not None)

    # -- loading ------------------------------------------------------------------------------

    def _rows(self, sql: str) -> list[Any]:
        return [json.loads(row[0]) for row in self._conn.execute(sql)]

    def _load(self, state: State) -> None:
        registry = state.registry
        orders = [ORDERS.decode(d, registry) for d in self._rows("SELECT data FROM orders ORDER BY seq")]
        state.orders, state.by_cl_ord_id, state.timed = {}, {}, []
        state.live = {pair_id: [] for pair_id in registry.pairs}
        for order in orders:
            if order.is_live:
                state.register(order)
            else:
                state.orders[order.txid] = order
        state.trades = {t.txid: t for t in (TRADES.decode(d, registry)
                                            for d in self._rows("SELECT data FROM trades ORDER BY n"))}
        for trade in state.trades.values():
            state.orders[trade.ordertxid].trades.append(trade.txid)
        state.positions = PositionBook()
        for data in self._rows("SELECT data FROM positions ORDER BY n"):
            state.positions.add(POSITIONS.decode(data, registry))
        self._load_ledger(state)
        issued = [row[0] for row in self._conn.execute("SELECT id FROM issued")]
        ids = json.loads(self._meta("ids") or "null")
        blob = self._conn.execute("SELECT value FROM meta WHERE key = 'ids_rng'").fetchone()
        if ids is None or blob is None:
            raise ConfigError(f"paper state {self.path}: the id generator's state is missing; the file is damaged")
        ids["rng"][1] = list(array("I", blob[0]))
        state.ids.restore(ids, issued)
        engine = json.loads(self._meta("engine") or "{}")
        state.last_seq = int(engine["last_seq"])
        state.dead_man_at = engine["dead_man_at"]
        state.system_status = engine["system_status"]
        state.pair_status = dict(engine["pair_status"])
        state.pending_closes = [state.orders[t] for t in engine["pending_closes"]]
        if isinstance(state.clock, ManualClock) and engine["clock"] is not None:
            state.clock.set(engine["clock"])
        self._load_market(state, json.loads(self._meta("market") or "{}"))

    def _load_ledger(self, state: State) -> None:
        rows = list(self._conn.execute("SELECT asset, balance, hold FROM balances ORDER BY asset"))
        for asset, _, _ in rows:
            state.registry.asset_or_new(asset)
        ledger = Ledger({asset: Decimal(balance) for asset, balance, _ in rows})
        for asset, _, hold in rows:
            ledger.add_hold(asset, Decimal(hold))
        state.ledger = ledger

    def _load_market(self, state: State, market: dict[str, Any]) -> None:
        registry = state.registry
        known = registry.pairs
        state.prices = {p: Decimal(v) for p, v in market.get("prices", {}).items() if p in known}
        state.tick_count = {p: int(v) for p, v in market.get("tick_count", {}).items() if p in known}
        for pair_id, value in market.get("budget", {}).items():
            if pair_id in known:
                state.budget[pair_id] = None if value is None else Decimal(value)
        state.stats = {p: STATS.decode(s, registry) for p, s in market.get("stats", {}).items() if p in known}


class JournaledLock:
    """The engine's lock with one duty added: when the outermost holder lets go, the state file
    is written first (so the change is durable before any observer or client hears of it)."""

    def __init__(self, inner: Any, journal: StateFile) -> None:
        self._inner = inner
        self._journal = journal
        self._depth = 0

    def __enter__(self) -> JournaledLock:
        self._inner.__enter__()
        self._depth += 1
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self._depth == 1:
                self._journal.after_op()
        finally:
            self._depth -= 1
            self._inner.__exit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)    # add_observer, remove_observer, ...
