"""`triplegain-fsm`: the jobs a person runs by hand.

    triplegain-fsm paper                  replay the built-in flash-crash demo on the paper exchange
    triplegain-fsm status --store FILE    open orders and positions in a store (read-only; --all, --watch)
    triplegain-fsm report --store FILE    an HTML report of a paper session (chart, P&L table)
    triplegain-fsm reconcile --config F   compare the store with the exchange, print the report (--dry-run,
                                          --resolve ORDER_ID for an order the exchange forgot)
    triplegain-fsm diagrams [--check]     regenerate (or check) diagrams/ from the machine tables
    triplegain-fsm events --store FILE    export transitions, alerts or fills as CSV or JSON
    triplegain-fsm exchange serve         the paper exchange on a loopback port (--prices CSV to replay)
    triplegain-fsm simulate --seed N      seeded chaos simulation of the whole core (--steps, --seeds, --crash-rate)

One module per command (`cmd_*.py`, each registers its own arguments); `common` holds
what they share. Errors a person can fix (a bad config, a missing file, an exchange
refusal) end in ONE line on stderr and a non-zero exit: 2 for usage and configuration,
1 for a failure while running. A traceback means a bug in this program.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from triplegain_fsm.cli import cmd_diagrams, cmd_exchange, cmd_paper, cmd_reconcile, cmd_simulate, cmd_views
from triplegain_fsm.cli.args import _version
from triplegain_fsm.cli.cmd_paper import resolve_prices  # noqa: F401  (cli.resolve_prices: kept for callers)
from triplegain_fsm.cli.common import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, Parser, UsageError, err
from triplegain_fsm.errors import TripleGainError, ValidationError
from triplegain_fsm.views.summary_text import _money, _num, print_summary  # noqa: F401  (public via cli too)
from triplegain_fsm.views.text import table  # noqa: F401  (cli.table: kept for callers)

__all__ = ["EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE", "UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="triplegain-fsm", description="Order-execution core for Kraken: paper sessions, "
                    "store inspection, reconciliation, state diagrams, a served paper exchange.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for command in (cmd_paper, cmd_views, cmd_reconcile, cmd_diagrams, cmd_exchange, cmd_simulate):
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 runtime failure, 2 usage or config error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by Parser.error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code = int(args.func(args))
        sys.stdout.flush()        # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:  # `... | head` closed the pipe: the reader has what it wanted
        _quiet_stdout()
        return EXIT_OK
    except UsageError as exc:
        err(str(exc))
        return EXIT_USAGE
    except ValidationError as exc:  # ConfigError, ProposalError, ScheduleError: the input is wrong
        err(str(exc))
        return EXIT_USAGE
    except TripleGainError as exc:  # KrakenError and friends: something failed while running
        err(f"{type(exc).__name__}: {exc}")
        return EXIT_RUNTIME
    except OSError as exc:  # a file we were told to write or read could not be
        err(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        err("interrupted")
        return 130


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise "Broken pipe" again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor to point anywhere: nothing left to flush
        return
