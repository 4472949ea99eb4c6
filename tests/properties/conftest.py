"""Fixtures for the property tests: a fresh paper-exchange core per hypothesis example.

Hypothesis runs many examples inside one test call, so per-example state cannot come
from function-scoped fixtures: `lab.core(...)` is a context manager that builds a core
on its own SQLite file and fake clock and closes it afterwards. The invariants are the
fault matrix's (tests/faults/invariants.py), loaded from their file: the test folders
are not packages.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken import retry
from triplegain_fsm.testing import FakeClock, paper_core


@attrs.define
class Trial:
    core: ExecutionCore
    clock: FakeClock
    alerts: list[Any]
    events: list[Any]
    bot: Any


@attrs.define
class Lab:
    root: Path
    inv: ModuleType
    _names: Any = attrs.field(factory=itertools.count)

    @contextmanager
    def core(self, account: str = "margin", price: str | None = "43000", **sections: Any) -> Iterator[Trial]:
        clock = FakeClock()
        core = paper_core(self.root / f"core{next(self._names)}.sqlite", account, price, clock, **sections)
        alerts: list[Any] = []
        events: list[Any] = []
        core.bus.subscribe("risk_alerts", alerts.append)
        core.bus.subscribe("execution", events.append)
        try:
            yield Trial(core, clock, alerts, events, self.inv.Bot(core))
        finally:
            core.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory, inv) -> Lab:
    return Lab(tmp_path_factory.mktemp("properties"), inv)


@pytest.fixture(autouse=True, scope="module")
def _no_client_waits() -> Iterator[None]:
    """Module-scoped (a function-scoped fixture under @given would run once for many examples)."""
    retry.set_testing(True)
    yield
    retry.set_testing(False)
