"""`triplegain-fsm diagrams`: regenerate (or check) diagrams/ from the machine tables."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from triplegain_fsm.cli.common import EXIT_OK, EXIT_RUNTIME, UsageError, err


def cmd_diagrams(args: argparse.Namespace) -> int:
    from triplegain_fsm import diagrams

    out = Path(args.out) if args.out else diagrams.default_directory()
    if args.check:
        if not out.is_dir():
            raise UsageError(f"{out}: no such directory")
        stale = diagrams.check(out)
        if stale:
            err(f"{out} is stale: {', '.join(stale)} differ from the code; run `triplegain-fsm diagrams`")
            return EXIT_RUNTIME
        print(f"{out}: up to date")
        return EXIT_OK
    written, warnings = diagrams.write(out)
    for warning in warnings:
        err(warning)
    print(f"{out}: " + (", ".join(p.name for p in written) + " updated" if written else "already up to date"))
    return EXIT_OK


def register(sub: Any) -> None:
    diagrams = sub.add_parser("diagrams", help="regenerate diagrams/ from the machine tables (or --check)")
    diagrams.add_argument("--check", action="store_true", help="only compare; exit 1 listing stale files")
    diagrams.add_argument("--out", help="directory (default: the repository's diagrams/)")
    diagrams.set_defaults(func=cmd_diagrams)
