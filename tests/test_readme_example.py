"""The README's Python example, run as a user runs it: pasted into a file, twice, against the same store.

The block under "Use it from a bot" is extracted from README.md (so an edit there is what is
tested), run in a subprocess from a temporary directory holding a copy of config/execution.yaml,
and run again: the second run restarts on the first one's store and paper account.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use it from a bot", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "example.py"], cwd=where, capture_output=True, text=True, timeout=60)


def test_the_readme_example_prints_the_trade_books_the_close_and_runs_twice(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "execution.yaml", tmp_path / "config" / "execution.yaml")
    (tmp_path / "example.py").write_text(example(), encoding="utf-8")
    balances = []
    for attempt in (1, 2):
        done = run(tmp_path)
        assert done.returncode == 0, f"run {attempt}:\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr and "alert:" not in done.stdout, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert re.fullmatch(r"opened pos-\w+: 0\.\d+ BTC at 43000\.00, stop 41000", lines[0]), lines
        pnl, fees = re.fullmatch(r"closed: P&L (-?[\d.]+) USD net of ([\d.]+) USD fees", lines[1]).groups()
        assert Decimal(pnl) == -Decimal(fees) < 0          # bought and sold at 43000: the fees are the loss
        balances.append(Decimal(re.fullmatch(r"USD balance at the exchange: ([\d.]+)", lines[2]).group(1)))
    assert balances[0] == Decimal("99997.41") and balances[1] < balances[0]   # the paper account persisted
    assert (tmp_path / "config" / "triplegain.sqlite").is_file()
    assert (tmp_path / "config" / "triplegain.paper.sqlite").is_file()
