"""`triplegain-fsm`: the jobs a person runs by hand.

    triplegain-fsm paper                  replay the built-in flash-crash demo on the paper exchange
    triplegain-fsm status --store FILE    open orders and positions in a store (read-only; --all, --watch)
    triplegain-fsm report --store FILE    an HTML report of a paper session (chart, P&L table)
    triplegain-fsm reconcile --config F   compare the store with the exchange, print the report
    triplegain-fsm diagrams [--check]     regenerate (or check) diagrams/ from the machine tables
    triplegain-fsm events --store FILE    export transitions, alerts or fills as CSV or JSON
    triplegain-fsm exchange serve         the paper exchange on a loopback port

Errors a person can fix (a bad config, a missing file, an exchange refusal) end
in ONE line on stderr and a non-zero exit: 2 for usage and configuration, 1 for
a failure while running. A traceback means a bug in this program.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from triplegain_fsm.cli_args import _decimal, _port, _positive_int, _seconds, _version
from triplegain_fsm.config import Config
from triplegain_fsm.errors import TripleGainError, ValidationError
from triplegain_fsm.views.readonly import NotAStore, open_store
from triplegain_fsm.views.summary_text import _money, _num, print_summary  # noqa: F401  (public via cli too)
from triplegain_fsm.views.text import table  # noqa: F401  (cli.table: kept for callers)

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """The command line names something that is not there or cannot be used (exit 2)."""


# --------------------------------------------------------------------------- output helpers


def _err(message: str) -> None:
    print(f"triplegain-fsm: {message}", file=sys.stderr)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


# --------------------------------------------------------------------------- config and stores


def _load_config(path: str | None) -> Config:
    if path is None:
        return Config.default()
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such config file")
    return Config.load(path)


def _store_path(args: argparse.Namespace) -> Path:
    """--store, else the config's storage.path (the default config's when no --config)."""
    if getattr(args, "store", None):
        path = Path(args.store)
    else:
        path = Path(_load_config(args.config).storage.path)
    if not path.is_file():
        raise UsageError(f"{path}: no such store (SQLite file); pass --store or a --config naming it")
    return path


def _read_only(path: Path) -> sqlite3.Connection:
    """Open a store without any chance of changing it, nor leaving -wal/-shm files (views.readonly)."""
    try:
        return open_store(path)
    except NotAStore as exc:
        raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- paper


def cmd_paper(args: argparse.Namespace) -> int:
    from triplegain_fsm import session

    symbol = args.symbol
    if args.report:
        _need_matplotlib()        # before the replay, not after it
    store = _new_store_path(args.store)
    if args.config:
        config = _load_config(args.config)
        if config.exchange.mode != "paper":
            raise UsageError(f"{args.config}: exchange.mode is {config.exchange.mode}; "
                             "the paper command only runs in paper mode")
        config = _with_store(config, store)
    else:
        config = session.demo_config(store)
    if args.prices:
        ticks = _csv_ticks(args.prices, args.scale)
        source = f"{args.prices}" + (f" x{args.scale}" if args.scale != 1 else "")
    else:
        ticks = session.demo_ticks()
        source = "built-in BTC/USD series with a flash crash"
    schedule = (session.load_schedule(args.proposals, len(ticks)) if args.proposals
                else session.demo_schedule(len(ticks)))
    if not args.quiet:
        print(f"paper session: {len(ticks):,} ticks of {symbol} ({source}), {len(schedule)} scheduled actions",
              file=sys.stderr)
    summary = _replay(args, session, config, ticks, schedule)
    written = _write_report(Path(summary.store_path), Path(args.report)) if args.report else None
    print_summary(summary, sys.stdout)
    if written:
        print(written)
    problems = summary.problems()
    for problem in problems:
        _err(f"session check failed: {problem}")
    return EXIT_OK if not problems else EXIT_RUNTIME


def _replay(args: argparse.Namespace, session: Any, config: Config, ticks: list[Any], schedule: list[Any]) -> Any:
    """Run the session with its progress shown: a rich bar on a terminal, lines when piped, none with --quiet."""
    from triplegain_fsm.views import progress

    def run(on_progress: Any) -> Any:
        return session.run_paper_session(config, ticks, schedule, symbol=args.symbol, poll_every=args.poll_every,
                                         on_progress=on_progress)

    if args.quiet:
        return run(None)
    if progress.wants_bar(len(ticks)):
        with progress.bar(len(ticks)) as show:
            return run(show)
    return run(_progress_printer(args.progress_every))


def _new_store_path(requested: str | None) -> Path:
    """A paper session writes to a fresh store, so it never restores another session's orders."""
    if requested is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = Path(f"triplegain-paper-{stamp}.sqlite")
    else:
        path = Path(requested)
    if path.exists() and path.stat().st_size > 0:
        raise UsageError(f"{path}: already exists; a paper session needs a new store file")
    return path.absolute()


def _with_store(config: Config, store: Path) -> Config:
    import attrs

    return attrs.evolve(config, storage=attrs.evolve(config.storage, path=str(store)))


def _csv_ticks(path: str, scale: Decimal) -> list[Any]:
    from triplegain_fsm.session import load_price_csv

    return load_price_csv(resolve_prices(path), scale)


def resolve_prices(path: str) -> Path:
    """A price file as given, else one of the shipped files by name (kraken_bcheur_trades_q2.csv)."""
    given = Path(path)
    if given.is_file():
        return given
    shipped = Path(__file__).resolve().parent / "data" / given.name
    if given.name == path and shipped.is_file():
        return shipped
    raise UsageError(f"{path}: no such price file (shipped: {', '.join(_shipped_prices())})")


def _shipped_prices() -> list[str]:
    return sorted(p.name for p in (Path(__file__).resolve().parent / "data").glob("*.csv"))


def _progress_printer(every_pct: int) -> Callable[[int, int], None]:
    from triplegain_fsm.views.progress import line_printer

    return line_printer(every_pct, sys.stderr)


def _need_matplotlib() -> None:
    from triplegain_fsm.views.chart import MatplotlibMissing, require_matplotlib

    try:
        require_matplotlib()
    except MatplotlibMissing as exc:
        raise UsageError(str(exc)) from None


def _write_report(store: Path, out: Path) -> str:
    """Write the HTML report; returns the line that says so."""
    from triplegain_fsm.views import html_report

    _need_matplotlib()
    data = html_report.write(store, out)
    return f"report: {out} ({len(data.ticks):,} ticks, {len(data.markers)} order events, {len(data.books)} positions)"


# --------------------------------------------------------------------------- status / events


def cmd_status(args: argparse.Namespace) -> int:
    path = _store_path(args)
    conn = _read_only(path)       # also checks it is a store before --watch starts drawing
    if args.watch:
        conn.close()
        from triplegain_fsm.views import watch

        return watch.run(path, args.interval)
    from triplegain_fsm.views.status_text import print_status

    try:
        print_status(conn, path, sys.stdout, show_all=args.all)
    finally:
        conn.close()
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    from triplegain_fsm.views import store_views

    path = _store_path(args)
    conn = _read_only(path)
    try:
        ids = None
        if args.entity_id:
            try:
                ids = store_views.entity_ids(conn, args.entity_id)
            except store_views.UnknownEntity:
                _err(f"{args.entity_id}: no order or position with this id in {path}")
                return EXIT_RUNTIME
        events = store_views.export_rows(conn, args.kind, ids)
    finally:
        conn.close()
    fields = store_views.EXPORT_FIELDS[args.kind]
    buffer = io.StringIO()
    if args.format == "json":
        json.dump(events, buffer, indent=2, default=_json_default)
        buffer.write("\n")
    else:
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(events)
    if args.output:
        Path(args.output).write_text(buffer.getvalue(), encoding="utf-8")
        noun = "events" if args.kind == "transitions" else args.kind
        print(f"{len(events)} {noun} written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(buffer.getvalue())
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    path = _store_path(args)
    _read_only(path).close()      # a usage error (not a store) before matplotlib is even looked for
    out = Path(args.output) if args.output else path.with_suffix(".html")
    print(_write_report(path, out))
    return EXIT_OK


# --------------------------------------------------------------------------- reconcile


def cmd_reconcile(args: argparse.Namespace) -> int:
    from triplegain_fsm.core import ExecutionCore

    config = _load_config(args.config)
    core = ExecutionCore.from_settings(config)
    try:
        report = core.sync_with_exchange()
    finally:
        core.close()
    data = report.as_dict()
    print(json.dumps(data, indent=2, default=_json_default))
    differences = data["unknown_exchange_orders"] or data["position_drift"] or data["errors"]
    if differences:
        _err("reconcile found differences between the store and the exchange (see the report)")
    return EXIT_RUNTIME if differences else EXIT_OK


# --------------------------------------------------------------------------- diagrams


def cmd_diagrams(args: argparse.Namespace) -> int:
    from triplegain_fsm import diagrams

    out = Path(args.out) if args.out else diagrams.default_directory()
    if args.check:
        if not out.is_dir():
            raise UsageError(f"{out}: no such directory")
        stale = diagrams.check(out)
        if stale:
            _err(f"{out} is stale: {', '.join(stale)} differ from the code; run `triplegain-fsm diagrams`")
            return EXIT_RUNTIME
        print(f"{out}: up to date")
        return EXIT_OK
    written, warnings = diagrams.write(out)
    for warning in warnings:
        _err(warning)
    print(f"{out}: " + (", ".join(p.name for p in written) + " updated" if written else "already up to date"))
    return EXIT_OK


# --------------------------------------------------------------------------- exchange serve


def cmd_exchange_serve(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    from triplegain_fsm.core import paper_exchange
    from triplegain_fsm.paper.server import serve_forever_with_ws

    exchange = paper_exchange(config)

    def ready(url: str, ws_url: str) -> None:
        # names where the paper signing key lives; never prints a key's value
        where = "triplegain_fsm.paper.PAPER_API_SECRET"
        print(f"paper exchange listening on {url} (Kraken REST paths; API key {exchange.api_key!r}, signing key "
              f"{where}; set exchange.base_url to the URL) and WebSocket v2 on {ws_url} (token from REST "
              "GetWebSocketsToken). Ctrl-C stops it.", file=sys.stderr, flush=True)

    try:
        serve_forever_with_ws(exchange, args.port, getattr(args, "ws_port", 0), ready=ready)
    except KeyboardInterrupt:
        print("paper exchange stopped", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) instead of the usage block and a line."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="triplegain-fsm", description="Order-execution core for Kraken: paper sessions, "
                     "store inspection, reconciliation, state diagrams.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    paper = sub.add_parser("paper", help="run a paper session (default: the built-in flash-crash demo)",
                           description="Replay a price series through the core on the in-process paper "
                           "exchange, then print orders, positions, fees and P&L. Exit 1 when orders are "
                           "left open on the exchange or the core's P&L differs from the exchange's.")
    paper.add_argument("--config", help="YAML config (must be exchange.mode: paper); default: the demo config")
    paper.add_argument("--prices", help="CSV of trades to replay (unix_time,price,volume or "
                       "timestamp_ms,trade_id,side,price,amount,cost), or the name of a shipped one "
                       "(kraken_bcheur_trades_q2.csv); default: the built-in series")
    paper.add_argument("--symbol", default="BTC/USD", help="pair the prices are for (default BTC/USD)")
    paper.add_argument("--scale", type=_decimal, default=Decimal(1),
                       help="multiply the CSV prices by X (e.g. to reach BTC/USD-like levels)")
    paper.add_argument("--proposals", help="YAML schedule of entries/closes/modifications "
                       "(see triplegain_fsm/data/demo_proposals.yaml); default: the demo schedule")
    paper.add_argument("--store", help="new SQLite file for the session (default: "
                       "./triplegain-paper-<UTC time>.sqlite); it is kept for inspection")
    paper.add_argument("--poll-every", type=_positive_int, default=1, metavar="N",
                       help="poll the exchange after every N ticks (default 1)")
    paper.add_argument("--progress-every", type=_positive_int, default=10, metavar="PCT",
                       help="progress line every PCT percent of the ticks (default 10)")
    paper.add_argument("--quiet", action="store_true", help="no progress lines or bar")
    paper.add_argument("--report", metavar="FILE.html", help="also write the session's HTML report "
                       "(needs the report extra: pip install 'triplegain-fsm[report]')")
    paper.set_defaults(func=cmd_paper)

    status = sub.add_parser("status", help="open orders and positions in a store (read-only)")
    where = status.add_mutually_exclusive_group()
    where.add_argument("--config", help="YAML config whose storage.path names the store")
    where.add_argument("--store", help="the SQLite store file")
    status.add_argument("--all", action="store_true",
                        help="closed positions too, with P&L and fees, totals, and alert counts")
    status.add_argument("--watch", action="store_true", help="redraw live until Ctrl-C (read-only)")
    status.add_argument("--interval", type=_seconds, default=2.0, metavar="S",
                        help="seconds between --watch refreshes (default 2)")
    status.set_defaults(func=cmd_status)

    report = sub.add_parser("report", help="an HTML report of a paper session from its store",
                            description="One self-contained HTML file (no network references): the price "
                            "series with every order event and stop/target move on it, and a P&L table per "
                            "position. Needs the report extra: pip install 'triplegain-fsm[report]'.")
    where = report.add_mutually_exclusive_group()
    where.add_argument("--config", help="YAML config whose storage.path names the store")
    where.add_argument("--store", help="the SQLite store file")
    report.add_argument("--output", metavar="FILE.html", help="where to write it (default: beside the store, .html)")
    report.set_defaults(func=cmd_report)

    reconcile = sub.add_parser("reconcile", help="reconcile the store with the exchange and print the report",
                               description="Builds the core from the config (live mode needs KRAKEN_API_KEY/"
                               "KRAKEN_API_SECRET or exchange.key_file), runs one reconciliation and prints "
                               "it as JSON. Exit 1 when it found differences.")
    reconcile.add_argument("--config", help="YAML config; default: the built-in defaults (paper mode)")
    reconcile.set_defaults(func=cmd_reconcile)

    diagrams = sub.add_parser("diagrams", help="regenerate diagrams/ from the machine tables (or --check)")
    diagrams.add_argument("--check", action="store_true", help="only compare; exit 1 listing stale files")
    diagrams.add_argument("--out", help="directory (default: the repository's diagrams/)")
    diagrams.set_defaults(func=cmd_diagrams)

    events = sub.add_parser("events", help="export the event log (every state change, with its reason)")
    where = events.add_mutually_exclusive_group()
    where.add_argument("--config", help="YAML config whose storage.path names the store")
    where.add_argument("--store", help="the SQLite store file")
    events.add_argument("--format", choices=("csv", "json"), default="csv")
    events.add_argument("--kind", choices=("transitions", "alerts", "fills"), default="transitions",
                        help="state changes (default), alerts, or fills")
    events.add_argument("--entity-id", help="only this order, or this position and all its orders")
    events.add_argument("--output", help="write to FILE instead of stdout")
    events.set_defaults(func=cmd_events)

    exchange = sub.add_parser("exchange", help="the paper exchange as a server")
    exchange_sub = exchange.add_subparsers(dest="exchange_command", required=True, metavar="COMMAND",
                                           parser_class=_Parser)
    serve = exchange_sub.add_parser("serve", help="serve the paper exchange's Kraken REST API on 127.0.0.1")
    serve.add_argument("--port", type=_port, default=8765,
                       help="TCP port on 127.0.0.1 (default 8765; 0 picks a free one and prints it)")
    serve.add_argument("--config", help="YAML config (its paper: section sets balances, prices, liquidity)")
    serve.set_defaults(func=cmd_exchange_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 runtime failure, 2 usage or config error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by _Parser.error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code = int(args.func(args))
        sys.stdout.flush()        # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:  # `... | head` closed the pipe: the reader has what it wanted
        _quiet_stdout()
        return EXIT_OK
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ValidationError as exc:  # ConfigError, ProposalError, ScheduleError: the input is wrong
        _err(str(exc))
        return EXIT_USAGE
    except TripleGainError as exc:  # KrakenError and friends: something failed while running
        _err(f"{type(exc).__name__}: {exc}")
        return EXIT_RUNTIME
    except OSError as exc:  # a file we were told to write or read could not be
        _err(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise "Broken pipe" again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor to point anywhere: nothing left to flush
        return


if __name__ == "__main__":
    sys.exit(main())
