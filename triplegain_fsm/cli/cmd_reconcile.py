"""`triplegain-fsm reconcile`: compare a store with its exchange, print the report (JSON).

Safe by construction: it only runs on a store that exists; in paper mode only beside the
paper exchange that store traded on (a new, empty one would make every position look
gone); `--dry-run` works on copies and sends no exchange write (`dry_run`); `--resolve`
ends an order the exchange forgot, audited (`resolve`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from triplegain_fsm.cli.common import (
    EXIT_OK,
    EXIT_RUNTIME,
    UsageError,
    err,
    json_default,
    load_config,
    read_only,
    refuse_paper_with_loopback_url,
    with_store,
)
from triplegain_fsm.config import Config


def cmd_reconcile(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = Path(args.store) if args.store else Path(config.storage.path)
    if not store.is_file():
        raise UsageError(f"{store}: no such store; reconcile compares an existing store with the exchange "
                         "(pass --store or a --config naming it)")
    read_only(store).close()     # a foreign file is refused before anything is built on it
    config = with_store(config, store.absolute())
    refuse_paper_with_loopback_url(config, args.config or "the default config")
    if config.exchange.mode == "paper":
        _require_paper_state(config, store)
    if args.dry_run:
        from triplegain_fsm.cli import dry_run

        with dry_run.on_copies(config) as copies:
            return _report(args, _run(args, copies, dry=True), dry=True)
    return _report(args, _run(args, config, dry=False), dry=False)


def _require_paper_state(config: Config, store: Path) -> None:
    """Refuse a paper store without its persisted paper exchange: against a new, empty one, every open
    position would look gone and be closed."""
    state = config.paper.state_file(str(config.storage.path))
    if state is None:
        raise UsageError(f"{store}: paper.state_path is ':memory:', so this store's paper exchange was never "
                         "kept; reconciling against a new, empty one would close every open position as gone")
    if not Path(state).is_file():
        raise UsageError(f"{store}: its paper exchange {state} is missing; reconciling against a new, empty one "
                         "would close every open position as gone. Put the file back (back up and restore the "
                         "two together), or start afresh with a new store")


def _run(args: argparse.Namespace, config: Config, *, dry: bool) -> dict[str, Any]:
    from triplegain_fsm.cli import dry_run, resolve
    from triplegain_fsm.core import ExecutionCore

    core = ExecutionCore.from_settings(config)
    recorder = dry_run.block_writes(core.client) if dry else None
    try:
        orders = [resolve.check(core, ident) for ident in args.resolve or ()]   # all checked before any is changed
        by = resolve.who()
        resolved = [resolve.resolve(core, order, by) for order in orders]
        data = core.sync_with_exchange().as_dict()
        if recorder is not None:
            data["errors"] = dry_run.without_refusals(data["errors"])
            if data.get("poll"):
                data["poll"]["errors"] = dry_run.without_refusals(data["poll"]["errors"])
        forgotten = resolve.forgotten_orders(core) if data["errors"] else []
    finally:
        core.close()
    data.update(dry_run=dry, resolved=resolved, forgotten_orders=forgotten)
    if recorder is not None:
        data["would_send"] = recorder.would_send
    return data


def _report(args: argparse.Namespace, data: dict[str, Any], *, dry: bool) -> int:
    print(json.dumps(data, indent=2, default=json_default))
    for item in data["resolved"]:
        print(f"resolved {item['order_id']} ({item['txid']}): {item['state']} -> {item['resolved_as']}"
              + (" (dry run: not kept)" if dry else ""), file=sys.stderr)
    if data["forgotten_orders"]:
        ids = ", ".join(o["order_id"] for o in data["forgotten_orders"])
        err(f"the exchange does not know {len(data['forgotten_orders'])} order(s) the store holds as working: "
            f"{ids}. If it forgot them, `triplegain-fsm reconcile --resolve ORDER_ID` ends each as cancelled "
            "(audited) and what it protected is protected again")
    if dry:
        print(f"dry run: nothing was changed; {len(data['would_send'])} exchange call(s) not sent (would_send)",
              file=sys.stderr)
    differences = data["unknown_exchange_orders"] or data["position_drift"] or data["errors"]
    if differences:
        err("reconcile found differences between the store and the exchange (see the report)")
    return EXIT_RUNTIME if differences else EXIT_OK


def register(sub: Any) -> None:
    reconcile = sub.add_parser(
        "reconcile", help="reconcile the store with the exchange and print the report",
        description="Builds the core on an existing store (live mode needs KRAKEN_API_KEY/KRAKEN_API_SECRET or "
        "exchange.key_file; paper mode needs the store's paper exchange beside it), runs one reconciliation "
        "and prints it as JSON. Exit 1 when it found differences.")
    reconcile.add_argument("--config", help="YAML config; default: the built-in defaults (paper mode)")
    reconcile.add_argument("--store", help="the SQLite store (default: the config's storage.path)")
    reconcile.add_argument("--dry-run", action="store_true",
                           help="report only: run on copies of the store (and paper state), send no order, "
                           "cancel or amend; the report lists them as would_send")
    reconcile.add_argument("--resolve", action="append", metavar="ORDER_ID",
                           help="end this working order (order id or Kraken txid) as cancelled, audited, once the "
                           "exchange confirms it does not know it; repeatable")
    reconcile.set_defaults(func=cmd_reconcile)
