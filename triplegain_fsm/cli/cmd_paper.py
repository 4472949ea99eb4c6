"""`triplegain-fsm paper`: a paper session on a price series, its summary and verdict."""
from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from triplegain_fsm.cli.args import _decimal, _positive_int, _probability
from triplegain_fsm.cli.common import (
    EXIT_OK,
    EXIT_RUNTIME,
    UsageError,
    err,
    load_config,
    refuse_paper_with_loopback_url,
    require_directory,
    with_store,
)
from triplegain_fsm.config import Config, load_yaml
from triplegain_fsm.views.summary_text import print_summary

CHAOS_RECONNECT_SECONDS = 0.2
DEMO_CONFIG = "demo.yaml"     # triplegain_fsm/data/demo.yaml, copied to config/demo.yaml for the repository


def cmd_paper(args: argparse.Namespace) -> int:
    from triplegain_fsm import session

    if args.report:
        need_matplotlib()        # before the replay, not after it
    if args.chaos_rate is not None and args.chaos is None:
        raise UsageError("--chaos-rate: only with --chaos")
    config, store = _config_and_store(args)
    if args.chaos is not None:
        config = chaos_config(config)
    if args.prices:
        ticks = csv_ticks(args.prices, args.scale)
        source = f"{args.prices}" + (f" x{args.scale}" if args.scale != 1 else "")
    else:
        ticks = session.demo_ticks()
        source = "built-in BTC/USD series with a flash crash"
    schedule = (session.load_schedule(args.proposals, len(ticks)) if args.proposals
                else session.demo_schedule(len(ticks)))
    if not args.quiet:
        print(f"paper session: {len(ticks):,} ticks of {args.symbol} ({source}), {len(schedule)} scheduled actions",
              file=sys.stderr)
    state = _paper_state(config, store)
    _check_new_account(state)
    with _removed_if_nothing_happened(store, state):
        summary = _replay(args, session, config, ticks, schedule)
    written = write_report(Path(summary.store_path), Path(args.report)) if args.report else None
    print_summary(summary, sys.stdout)
    if written:
        print(written)
    problems = summary.problems()
    for problem in problems:
        err(f"session check failed: {problem}")
    return EXIT_OK if not problems else EXIT_RUNTIME


def demo_config(store: Path) -> Config:
    """The demo's settings, read from the shipped data/demo.yaml, on `store`."""
    text = resources.files("triplegain_fsm").joinpath("data").joinpath(DEMO_CONFIG)
    with resources.as_file(text) as path:
        return with_store(Config.load(path), store)


def _config_and_store(args: argparse.Namespace) -> tuple[Config, Path]:
    """The session's config and its new store: --store, else the config file's storage.path, else a
    fresh ./triplegain-paper-<UTC time>.sqlite."""
    if not args.config:
        store = new_store_path(args.store)
        return demo_config(store), store
    config = load_config(args.config)
    if config.exchange.mode != "paper":
        raise UsageError(f"{args.config}: exchange.mode is {config.exchange.mode}; "
                         "the paper command only runs in paper mode")
    refuse_paper_with_loopback_url(config, args.config)
    named = args.store or (config.storage.path if _sets_storage_path(args.config) else None)
    store = new_store_path(named)
    return with_store(config, store), store


def chaos_config(config: Config) -> Config:
    """A replay runs hours in seconds: a stream cut under --chaos must come back within it, not after
    the configured (wall-clock) reconnect delay."""
    import attrs

    exchange = config.exchange
    quick = min(exchange.stream_reconnect_seconds, CHAOS_RECONNECT_SECONDS)
    return attrs.evolve(config, exchange=attrs.evolve(exchange, stream_reconnect_seconds=quick))


def _sets_storage_path(config_file: str) -> bool:
    data = load_yaml(config_file)
    storage = data.get("storage") if isinstance(data, dict) else None
    return isinstance(storage, dict) and "path" in storage


def new_store_path(requested: str | None) -> Path:
    """A paper session writes to a fresh store, so it never restores another session's orders."""
    if requested is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = Path(f"triplegain-paper-{stamp}.sqlite")
    else:
        path = Path(requested)
    if path.exists() and path.stat().st_size > 0:
        raise UsageError(f"{path}: already exists; a paper session needs a new store file")
    require_directory(path, "the session's store")
    return path.absolute()


def _paper_state(config: Config, store: Path) -> Path | None:
    state = config.paper.state_file(str(store))
    return None if state is None else Path(state)


def _check_new_account(state: Path | None) -> None:
    """A session starts a new paper account: an old one beside a new store would trade on its balances."""
    if state is not None and state.exists() and state.stat().st_size > 0:
        raise UsageError(f"{state}: a paper account already lives there; a paper session starts a new one "
                         "(delete it, or pick another --store)")
    if state is not None:
        require_directory(state, "the paper account, paper.state_path")


@contextmanager
def _removed_if_nothing_happened(store: Path, state: Path | None) -> Iterator[None]:
    """A run that fails before anything was recorded leaves no empty store (nor paper account) behind.

    Files that existed before are never touched; a store that holds orders is kept, it is the record
    of what happened before the failure.
    """
    new = [p for p in (store, state) if p is not None and not p.exists()]
    try:
        yield
    except BaseException:
        if new and _holds_nothing(store):
            for path in new:
                for leftover in (path, *(Path(f"{path}-{end}") for end in ("wal", "shm", "journal"))):
                    leftover.unlink(missing_ok=True)
        raise


def _holds_nothing(store: Path) -> bool:
    from triplegain_fsm.paper.persist import connect_read_only

    if not store.exists():
        return True
    try:
        conn = connect_read_only(store)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]) == 0
        finally:
            conn.close()
    except sqlite3.Error:          # no orders table: the store was never set up
        return True


def _replay(args: argparse.Namespace, session: Any, config: Config, ticks: list[Any], schedule: list[Any]) -> Any:
    """Run the session with its progress shown: a rich bar on a terminal, lines when piped, none with --quiet."""
    from triplegain_fsm.views import progress

    chaos = None
    if args.chaos is not None:
        from triplegain_fsm.simulate.chaos import PaperChaos

        chaos = PaperChaos(args.chaos) if args.chaos_rate is None else PaperChaos(args.chaos, rate=args.chaos_rate)

    def run(on_progress: Any) -> Any:
        return session.run_paper_session(config, ticks, schedule, symbol=args.symbol, poll_every=args.poll_every,
                                         on_progress=on_progress, chaos=chaos)

    if args.quiet:
        return run(None)
    if progress.wants_bar(len(ticks)):
        with progress.bar(len(ticks)) as show:
            return run(show)
    return run(_progress_printer(args.progress_every))


def csv_ticks(path: str, scale: Decimal) -> list[Any]:
    from triplegain_fsm.session import load_price_csv

    return load_price_csv(resolve_prices(path), scale)


def resolve_prices(path: str) -> Path:
    """A price file as given, else one of the shipped files by name (kraken_bcheur_trades_q2.csv)."""
    given = Path(path)
    if given.is_file():
        return given
    shipped = _data_dir() / given.name
    if given.name == path and shipped.is_file():
        return shipped
    raise UsageError(f"{path}: no such price file (shipped: {', '.join(shipped_prices())})")


def shipped_prices() -> list[str]:
    return sorted(p.name for p in _data_dir().glob("*.csv"))


def _data_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data"


def _progress_printer(every_pct: int) -> Callable[[int, int], None]:
    from triplegain_fsm.views.progress import line_printer

    return line_printer(every_pct, sys.stderr)


def need_matplotlib() -> None:
    from triplegain_fsm.views.chart import MatplotlibMissing, require_matplotlib

    try:
        require_matplotlib()
    except MatplotlibMissing as exc:
        raise UsageError(str(exc)) from None


def write_report(store: Path, out: Path) -> str:
    """Write the HTML report; returns the line that says so."""
    from triplegain_fsm.views import html_report

    need_matplotlib()
    data = html_report.write(store, out)
    return f"report: {out} ({len(data.ticks):,} ticks, {len(data.markers)} order events, {len(data.books)} positions)"


def register(sub: Any) -> None:
    paper = sub.add_parser("paper", help="run a paper session (default: the built-in flash-crash demo)",
                           description="Replay a price series through the core on the in-process paper "
                           "exchange, then print orders, positions, fees and P&L. Exit 1 when orders are "
                           "left open on the exchange, the core's P&L differs from the exchange's, a position "
                           "went unprotected or a critical alert was raised.")
    paper.add_argument("--config", help="YAML config (must be exchange.mode: paper); its storage.path, when set, "
                       "names the session's store; default: the demo's (triplegain_fsm/data/demo.yaml)")
    paper.add_argument("--prices", help="CSV of trades to replay (unix_time,price,volume or "
                       "timestamp_ms,trade_id,side,price,amount,cost), or the name of a shipped one "
                       "(kraken_bcheur_trades_q2.csv); default: the built-in series")
    paper.add_argument("--symbol", default="BTC/USD", help="pair the prices are for (default BTC/USD)")
    paper.add_argument("--scale", type=_decimal, default=Decimal(1),
                       help="multiply the CSV prices by X (e.g. to reach BTC/USD-like levels)")
    paper.add_argument("--proposals", help="YAML schedule of entries/closes/modifications "
                       "(see triplegain_fsm/data/demo_proposals.yaml); default: the demo schedule")
    paper.add_argument("--store", help="new SQLite file for the session (default: the config's storage.path "
                       "if it sets one, else ./triplegain-paper-<UTC time>.sqlite); it is kept for inspection")
    paper.add_argument("--poll-every", type=_positive_int, default=1, metavar="N",
                       help="poll the exchange after every N ticks (default 1)")
    paper.add_argument("--progress-every", type=_positive_int, default=10, metavar="PCT",
                       help="progress line every PCT percent of the ticks (default 10)")
    paper.add_argument("--quiet", action="store_true", help="no progress lines or bar")
    paper.add_argument("--report", metavar="FILE.html", help="also write the session's HTML report "
                       "(needs the report extra: pip install 'triplegain-fsm[report]')")
    paper.add_argument("--chaos", type=int, nargs="?", const=1, default=None, metavar="SEED",
                       help="run on a hostile exchange: before each tick, with probability --chaos-rate, a "
                       "seeded REST fault or storm, a stream drop/gap/lost update/dead token, a fault on the "
                       "WebSocket order entry, or a human cancelling a stop or an entry at the exchange. "
                       "The verdict is then the simulator's invariants (critical alerts are counted, "
                       "expected here); the stream reconnects within 0.2 s so it comes back within a replay")
    paper.add_argument("--chaos-rate", type=_probability, default=None, metavar="P",
                       help="incidents per tick under --chaos (default 0.03)")
    paper.set_defaults(func=cmd_paper)
