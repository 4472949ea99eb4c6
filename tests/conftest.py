"""Fixtures shared by the suites that drive the whole core through the paper exchange.

The test folders are not packages (pytest runs with --import-mode=importlib), so the
shared invariant checks (tests/faults/invariants.py) are loaded from their file once
and handed out by the session fixture `inv`.
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken import retry
from triplegain_fsm.testing import FakeClock, paper_core

INVARIANTS = "triplegain_fsm_test_invariants"
INVARIANTS_FILE = Path(__file__).parent / "faults" / "invariants.py"


def load_invariants() -> ModuleType:
    if INVARIANTS not in sys.modules:
        spec = importlib.util.spec_from_file_location(INVARIANTS, INVARIANTS_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[INVARIANTS] = module
        spec.loader.exec_module(module)
    return sys.modules[INVARIANTS]


@pytest.fixture(scope="session")
def inv() -> ModuleType:
    return load_invariants()


@pytest.fixture(autouse=True)
def _no_client_waits() -> Iterator[None]:
    """The client never sleeps in tests (tests/kraken opts back in to real waiting per test)."""
    retry.set_testing(True)
    yield
    retry.set_testing(False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core_account() -> str:
    """The account make_core builds by default; a folder's conftest may override it."""
    return "spot"


@pytest.fixture
def make_core(tmp_path, clock, core_account):
    cores: list[ExecutionCore] = []

    def build(account: str | None = None, price: str | None = "43000", **sections: Any) -> ExecutionCore:
        core = paper_core(tmp_path / f"core{len(cores)}.sqlite", account or core_account, price, clock, **sections)
        cores.append(core)
        return core

    yield build
    for core in cores:
        core.close()


@pytest.fixture
def collect():
    """collect(core) -> (events, alerts): every message the core publishes on its two topics."""

    def attach(core: ExecutionCore) -> tuple[list[Any], list[Any]]:
        events: list[Any] = []
        alerts: list[Any] = []
        core.bus.subscribe("execution", events.append)
        core.bus.subscribe("risk_alerts", alerts.append)
        return events, alerts

    return attach
