"""The fault matrix runs on a margin account by default (both legs rest at the exchange).

The shared fixtures (make_core, clock, collect, inv) are in tests/conftest.py.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def core_account() -> str:
    return "margin"
