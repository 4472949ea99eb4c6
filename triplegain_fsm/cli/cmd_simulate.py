"""`triplegain-fsm simulate`: the seeded chaos simulation of the whole core (triplegain_fsm.simulate).

    triplegain-fsm simulate --seed 42 --steps 20000
    triplegain-fsm simulate --seed 1 --steps 300 --seeds 50 --crash-rate 0.03
    triplegain-fsm simulate --threaded 30 --seed 3      # the real threads instead (simulate.soak)

Prints the totals; a broken invariant prints the seed, step and first broken invariant
and exits 1. The same arguments reproduce the same output exactly, except with
`--threaded`: its threads interleave as they will, the seed fixes only what they draw.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from triplegain_fsm.cli.args import _positive_int, _probability
from triplegain_fsm.cli.common import EXIT_OK, EXIT_RUNTIME, UsageError, err


def _soak_seconds(text: str) -> float:
    try:
        value = float(text)   # float-ok: wall seconds, not money
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 1 and 86400 seconds, got {text}")
    return value


def format_totals(totals: Any) -> list[str]:
    from triplegain_fsm.simulate.results import counts_text as _counts

    return [
        f"seeds {totals.seeds}, steps {totals.steps}, fills {totals.fills}, settles {totals.settles}, "
        f"refused calls {totals.refused}",
        f"accounts: {_counts(totals.accounts)}; order entry: {_counts(totals.entries)}",
        f"crashes {sum(totals.crashes.values())} ({_counts(totals.crashes)})",
        f"REST faults {sum(totals.faults.values())} ({totals.storms} storms): {_counts(totals.faults)}",
        f"stream faults {sum(totals.stream_faults.values())}: {_counts(totals.stream_faults)}",
        f"WebSocket order-entry faults {sum(totals.ws_faults.values())}: {_counts(totals.ws_faults)}",
        f"human actions {sum(totals.human.values())}: {_counts(totals.human)}",
        f"unprotected position-seconds {totals.unprotected_seconds:.1f} "
        f"({totals.per_thousand_fills:.1f} per 1,000 fills); worst window {totals.worst_window:.1f} s"
        + (f" ({totals.worst_where})" if totals.worst_where else ""),
    ]


def cmd_threaded(args: argparse.Namespace) -> int:
    """The threaded soak: figures on stdout; a failure names the seed and exits 1."""
    from triplegain_fsm.simulate.soak import run_soak

    result = run_soak(args.seed, args.threaded, threads=args.threads)
    for line in result.lines():
        print(line)
    if result.failure is not None:
        print(result.describe_failure())
        err(f"the threaded soak broke an invariant; run the same load again with "
            f"`triplegain-fsm simulate --threaded {args.threaded:g} --seed {args.seed} --threads {args.threads}` "
            "(thread timing differs from run to run)")
        return EXIT_RUNTIME
    print("all invariants held (threaded soak)")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from triplegain_fsm.simulate import run_many

    if args.threaded is not None:
        return cmd_threaded(args)
    if args.settle_every < 1:
        raise UsageError("--settle-every: must be at least 1")
    began = time.perf_counter()
    totals, failures = run_many(args.seed, args.steps, args.seeds, crash_rate=args.crash_rate,
                                settle_every=args.settle_every)
    for line in format_totals(totals):
        print(line)
    # wall time goes to stderr: stdout is the same for the same arguments, on any machine
    print(f"simulated in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    if failures:
        for failure in failures:
            print(failure.describe())
        err(f"{len(failures)} of {totals.seeds} seeds broke an invariant; reproduce one with "
            f"`triplegain-fsm simulate --seed {failures[0].seed} --steps {args.steps} --crash-rate {args.crash_rate}`")
        return EXIT_RUNTIME
    print(f"all invariants held ({totals.seeds} seeds)")
    return EXIT_OK


def register(sub: Any) -> None:
    parser = sub.add_parser("simulate", help="seeded chaos simulation of the whole core against the paper exchange")
    parser.add_argument("--seed", type=int, default=1, help="the first seed (default 1)")
    parser.add_argument("--steps", type=_positive_int, default=1000, help="steps per seed (default 1000)")
    parser.add_argument("--seeds", type=_positive_int, default=1, help="how many seeds, from --seed on (default 1)")
    parser.add_argument("--crash-rate", type=_probability, default=0.02,
                        help="probability per step of a crash (default 0.02)")
    parser.add_argument("--settle-every", type=int, default=50,
                        help="steps between calm phases that check every invariant (default 50)")
    parser.add_argument("--threaded", type=_soak_seconds, metavar="SECONDS",
                        help="run the threaded soak instead: a started core (poller, stream over loopback "
                             "WebSocket), bot, price and chaos threads for SECONDS of wall time, then settle "
                             "(bounded), close all, stop and check; not reproducible: the seed fixes only what "
                             "each thread draws, not how they interleave")
    parser.add_argument("--threads", type=_positive_int, default=4,
                        help="bot threads of --threaded (default 4)")
    parser.set_defaults(func=cmd_simulate)
