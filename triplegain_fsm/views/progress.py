"""Progress of a paper replay: a rich bar on a terminal for a long replay, plain percent lines otherwise.

The bar is drawn only when both stdout and stderr are terminals and the replay
has at least LONG_REPLAY ticks; piped output and --quiet never get one (the
caller passes no reporter at all for --quiet). The bar goes to stderr, so the
summary on stdout stays clean.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

LONG_REPLAY = 1000   # ticks; the demo (1,200) is long enough to show it

Progress = Callable[[int, int], None]


def wants_bar(ticks: int, stdout: Any = None, stderr: Any = None) -> bool:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    return ticks >= LONG_REPLAY and _isatty(stdout) and _isatty(stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def line_printer(every_pct: int, out: TextIO) -> Progress:
    """A line every `every_pct` percent: '   10%  120/1,200 ticks'."""
    state = {"next": every_pct}

    def show(done: int, total: int) -> None:
        pct = done * 100 // total
        if pct >= state["next"] or done == total:
            print(f"  {pct:3d}%  {done:,}/{total:,} ticks", file=out)
            state["next"] = (pct // every_pct + 1) * every_pct

    return show


@contextmanager
def bar(total: int, description: str = "replaying") -> Iterator[Progress]:
    """A rich progress bar on stderr for the duration of the block; yields the session's progress callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ticks"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)

        def show(done: int, total: int) -> None:
            progress.update(task, completed=done)

        yield show
