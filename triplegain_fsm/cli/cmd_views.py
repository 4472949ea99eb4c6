"""`status`, `events`, `report`: read-only looks at a store (no exchange calls, no files left beside it)."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from triplegain_fsm.cli.args import _seconds
from triplegain_fsm.cli.cmd_paper import write_report
from triplegain_fsm.cli.common import EXIT_OK, EXIT_RUNTIME, err, json_default, read_only, store_path


def cmd_status(args: argparse.Namespace) -> int:
    path = store_path(args)
    conn = read_only(path)       # also checks it is a store before --watch starts drawing
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

    path = store_path(args)
    conn = read_only(path)
    try:
        ids = None
        if args.entity_id:
            try:
                ids = store_views.entity_ids(conn, args.entity_id)
            except store_views.UnknownEntity:
                err(f"{args.entity_id}: no order or position with this id in {path}")
                return EXIT_RUNTIME
        events = store_views.export_rows(conn, args.kind, ids)
    finally:
        conn.close()
    fields = store_views.EXPORT_FIELDS[args.kind]
    buffer = io.StringIO()
    if args.format == "json":
        json.dump(events, buffer, indent=2, default=json_default)
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
    path = store_path(args)
    read_only(path).close()      # a usage error (not a store) before matplotlib is even looked for
    out = Path(args.output) if args.output else path.with_suffix(".html")
    print(write_report(path, out))
    return EXIT_OK


def _where(parser: Any) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", help="YAML config whose storage.path names the store")
    where.add_argument("--store", help="the SQLite store file")


def register(sub: Any) -> None:
    status = sub.add_parser("status", help="open orders and positions in a store (read-only)")
    _where(status)
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
    _where(report)
    report.add_argument("--output", metavar="FILE.html", help="where to write it (default: beside the store, .html)")
    report.set_defaults(func=cmd_report)

    events = sub.add_parser("events", help="export the event log (every state change, with its reason)")
    _where(events)
    events.add_argument("--format", choices=("csv", "json"), default="csv")
    events.add_argument("--kind", choices=("transitions", "alerts", "fills"), default="transitions",
                        help="state changes (default), alerts, or fills")
    events.add_argument("--entity-id", help="only this order, or this position and all its orders")
    events.add_argument("--output", help="write to FILE instead of stdout")
    events.set_defaults(func=cmd_events)
