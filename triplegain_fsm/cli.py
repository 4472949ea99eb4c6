"""`triplegain-fsm`: the jobs a person runs by hand.

    triplegain-fsm paper                  replay the built-in flash-crash demo on the paper exchange
    triplegain-fsm status --store FILE    open orders and positions in a store (read-only)
    triplegain-fsm reconcile --config F   compare the store with the exchange, print the report
    triplegain-fsm diagrams [--check]     regenerate (or check) diagrams/ from the machine tables
    triplegain-fsm events --store FILE    export the event log as CSV or JSON
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
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from triplegain_fsm.config import Config
from triplegain_fsm.errors import TripleGainError, ValidationError

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
_FINAL_ORDER_STATES = ("FILLED", "CANCELLED", "EXPIRED", "REJECTED")


class UsageError(Exception):
    """The command line names something that is not there or cannot be used (exit 2)."""


# --------------------------------------------------------------------------- output helpers


def _err(message: str) -> None:
    print(f"triplegain-fsm: {message}", file=sys.stderr)


def _money(value: Any, places: int = 2) -> str:
    if value is None or value == "":
        return "-"
    return f"{Decimal(value).quantize(Decimal(1).scaleb(-places)):,}"


def _num(value: Any) -> str:
    """A size or price as exact text without trailing zeros (0.11630000 -> 0.1163)."""
    if value is None or value == "":
        return "-"
    return format(Decimal(value).normalize(), "f")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO, *,
          right: Iterable[int] = ()) -> None:
    """A plain fixed-width table; `right` lists the columns to right-align (numbers)."""
    body = [[str(cell) for cell in row] for row in rows]
    if not body:
        print("  (none)", file=out)
        return
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    right_cols = set(right)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right_cols else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print(line(list(headers)), file=out)
    print(line(["-" * w for w in widths]), file=out)
    for row in body:
        print(line(row), file=out)


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
    """Open a store without any chance of changing it (safe beside a running bot: WAL readers)."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise UsageError(f"{path}: not a triplegain store ({exc})") from None
    if not {"orders", "positions", "events"} <= tables:
        conn.close()
        raise UsageError(f"{path}: not a triplegain store (no orders/positions/events tables)")
    return conn


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(sql, params)]


# --------------------------------------------------------------------------- paper


def cmd_paper(args: argparse.Namespace) -> int:
    from triplegain_fsm import session

    symbol = args.symbol
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
    progress = None if args.quiet else _progress_printer(args.progress_every)
    summary = session.run_paper_session(config, ticks, schedule, symbol=symbol, poll_every=args.poll_every,
                                        on_progress=progress)
    print_summary(summary, sys.stdout)
    problems = summary.problems()
    for problem in problems:
        _err(f"session check failed: {problem}")
    return EXIT_OK if not problems else EXIT_RUNTIME


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

    if not Path(path).is_file():
        raise UsageError(f"{path}: no such price file")
    return load_price_csv(path, scale)


def _progress_printer(every_pct: int) -> Callable[[int, int], None]:
    state = {"next": every_pct}

    def show(done: int, total: int) -> None:
        pct = done * 100 // total
        if pct >= state["next"] or done == total:
            print(f"  {pct:3d}%  {done:,}/{total:,} ticks", file=sys.stderr)
            state["next"] = (pct // every_pct + 1) * every_pct

    return show


def print_summary(summary: Any, out: TextIO) -> None:
    print(f"\nActions ({len(summary.actions)})", file=out)
    table(["tick", "action", "outcome"], [(a.tick, a.action, a.outcome) for a in summary.actions], out,
          right=[0])
    print(f"\nOrders ({len(summary.orders)}): "
          + ", ".join(f"{n} {state}" for state, n in summary.orders_by_status.items()), file=out)
    table(["order", "position", "role", "side", "type", "size", "filled", "avg price", "trigger", "fee", "state"],
          [(o.id, o.position_id or "-", o.role.value, o.side.value, o.order_type.value, _num(o.size),
            _num(o.filled_size), _money(o.average_fill_price), _money(o.stop_price), _money(o.fee_amount, 4),
            o.state) for o in summary.orders], out, right=[5, 6, 7, 8, 9])
    _explain_rejections(summary.orders, out)
    print(f"\nPositions ({len(summary.positions)})", file=out)
    table(["position", "ref", "side", "size", "entry", "exit", "stop", "target", "ended by", "fees",
           "P&L core", "P&L exchange"],
          [(p.id, p.ref or "-", p.side, _num(p.entry_size), _money(p.entry_price), _money(p.exit_price),
            _money(p.stop_loss), _money(p.take_profit), p.exit_by + (" (trailed)" if p.trailing else ""),
            _money(p.fees), _money(p.core_pnl), _money(p.exchange_pnl)) for p in summary.positions], out,
          right=[3, 4, 5, 6, 7, 9, 10, 11])
    print("\nTotals", file=out)
    table(["", "core", "paper exchange"], [
        ("fees", _money(summary.total_fees, 4), _money(summary.exchange_fees, 4)),
        ("realized P&L (net of fees)", _money(summary.core_pnl), _money(summary.exchange_pnl)),
    ], out, right=[1, 2])
    alerts = ", ".join(f"{n} {kind}" for kind, n in summary.alerts_by_type.items()) or "none"
    print(f"\nalerts: {alerts}", file=out)
    print(f"orders that filled in parts: {summary.partially_filled_orders}", file=out)
    print(f"open orders left on the paper exchange: {summary.open_exchange_orders}", file=out)
    print(f"{summary.ticks:,} ticks in {summary.elapsed_seconds:.2f} s ({summary.ticks_per_second:,.0f} ticks/s)",
          file=out)
    verdict = "OK: books agree to the cent, nothing left open" if summary.ok else "FAILED: " + "; ".join(
        summary.problems())
    print(verdict, file=out)
    print(f"store: {summary.store_path}  (triplegain-fsm status --store ...; triplegain-fsm events --store ...)",
          file=out)


def _explain_rejections(orders: Iterable[Any], out: TextIO) -> None:
    """Why orders were rejected, grouped: on a spot account most are expected (see below)."""
    reasons: dict[tuple[str, str], int] = {}
    for order in orders:
        if order.state == "REJECTED":
            key = (order.role.value, order.error_message or "no reason recorded")
            reasons[key] = reasons.get(key, 0) + 1
    for (role, reason), count in sorted(reasons.items()):
        note = ""
        if role == "take_profit" and "Insufficient funds" in reason:
            note = " -> expected on spot: the stop-loss holds the coins, so the take-profit is watched locally"
        print(f"rejected: {count} {role}: {reason}{note}", file=out)


# --------------------------------------------------------------------------- status / events


def cmd_status(args: argparse.Namespace) -> int:
    path = _store_path(args)
    conn = _read_only(path)
    try:
        marks = ",".join("?" for _ in _FINAL_ORDER_STATES)
        orders = _rows(conn, f"SELECT * FROM orders WHERE state NOT IN ({marks}) ORDER BY created_at",
                       _FINAL_ORDER_STATES)
        positions = _rows(conn, "SELECT * FROM positions WHERE state != 'CLOSED' ORDER BY opened_at")
        counts = _rows(conn, "SELECT state, COUNT(*) AS n FROM orders GROUP BY state ORDER BY state")
        closed = _rows(conn, "SELECT COUNT(*) AS n FROM positions WHERE state = 'CLOSED'")[0]["n"]
    finally:
        conn.close()
    out = sys.stdout
    print(f"store: {path}", file=out)
    print("orders by state: " + (", ".join(f"{r['n']} {r['state']}" for r in counts) or "none"), file=out)
    print(f"\nOpen orders ({len(orders)})", file=out)
    table(["order", "position", "role", "side", "type", "size", "filled", "price", "trigger", "state", "txid"],
          [(o["id"], o["position_id"] or "-", o["role"], o["side"], o["order_type"], _num(o["size"]),
            _num(o["filled_size"]), _money(o["price"]), _money(o["stop_price"]), o["state"],
            o["external_id"] or "-") for o in orders], out, right=[5, 6, 7, 8])
    print(f"\nOpen positions ({len(positions)}; {closed} closed)", file=out)
    table(["position", "symbol", "side", "size", "entry", "stop", "(where)", "target", "(where)", "state",
           "fees", "realized"],
          [(p["id"], p["symbol"], p["side"], _num(p["size"]), _money(p["entry_price"]), _money(p["stop_loss"]),
            p["stop_loss_location"], _money(p["take_profit"]), p["take_profit_location"], p["state"],
            _money(p["total_fees"]), _money(p["realized_pnl"])) for p in positions], out, right=[3, 4, 5, 7, 10, 11])
    return EXIT_OK


_EVENT_FIELDS = ["seq", "at", "entity", "entity_id", "from_state", "to_state", "trigger", "reason", "payload_digest"]


def cmd_events(args: argparse.Namespace) -> int:
    path = _store_path(args)
    conn = _read_only(path)
    try:
        sql = f"SELECT {', '.join(_EVENT_FIELDS)} FROM events"
        params: list[Any] = []
        if args.entity_id:
            sql += " WHERE entity_id = ?"
            params.append(args.entity_id)
        events = _rows(conn, sql + " ORDER BY seq", params)
    finally:
        conn.close()
    buffer = io.StringIO()
    if args.format == "json":
        json.dump(events, buffer, indent=2, default=_json_default)
        buffer.write("\n")
    else:
        writer = csv.DictWriter(buffer, fieldnames=_EVENT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(events)
    if args.output:
        Path(args.output).write_text(buffer.getvalue(), encoding="utf-8")
        print(f"{len(events)} events written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(buffer.getvalue())
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
    from triplegain_fsm.paper.server import serve_forever

    exchange = paper_exchange(config)

    def ready(url: str) -> None:
        # names where the paper signing key lives; never prints a key's value
        where = "triplegain_fsm.paper.PAPER_API_SECRET"
        print(f"paper exchange listening on {url} (Kraken REST paths; API key {exchange.api_key!r}, signing key "
              f"{where}; set exchange.base_url to the URL). Ctrl-C stops it.", file=sys.stderr, flush=True)

    try:
        serve_forever(exchange, args.port, ready=ready)
    except KeyboardInterrupt:
        print("paper exchange stopped", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- the parser


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) instead of the usage block and a line."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="triplegain-fsm", description="Order-execution core for Kraken: paper sessions, "
                     "store inspection, reconciliation, state diagrams.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    paper = sub.add_parser("paper", help="run a paper session (default: the built-in flash-crash demo)",
                           description="Replay a price series through the core on the in-process paper "
                           "exchange, then print orders, positions, fees and P&L. Exit 1 when orders are "
                           "left open on the exchange or the core's P&L differs from the exchange's.")
    paper.add_argument("--config", help="YAML config (must be exchange.mode: paper); default: the demo config")
    paper.add_argument("--prices", help="CSV of trades to replay (unix_time,price,volume or "
                       "timestamp_ms,trade_id,side,price,amount,cost); default: the built-in series")
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
    paper.add_argument("--quiet", action="store_true", help="no progress lines")
    paper.set_defaults(func=cmd_paper)

    status = sub.add_parser("status", help="open orders and positions in a store (read-only)")
    where = status.add_mutually_exclusive_group()
    where.add_argument("--config", help="YAML config whose storage.path names the store")
    where.add_argument("--store", help="the SQLite store file")
    status.set_defaults(func=cmd_status)

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
    events.add_argument("--entity-id", help="only this order or position id")
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
        return int(args.func(args))
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


if __name__ == "__main__":
    sys.exit(main())
