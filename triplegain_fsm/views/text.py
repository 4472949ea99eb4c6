"""Plain fixed-width tables for the terminal and for pipes."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TextIO


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
