"""Kraken spot REST and WebSocket v2: signing, wire parameters, pairs, pacing, errors, client, stream.

Names load on first use (like the top-level package), so importing one light module
such as `triplegain_fsm.kraken.signing` does not pull in requests and tenacity.
Error classes live in `triplegain_fsm.kraken.errors`; each says `retry_safe`,
`outcome_unknown`, `auth_failure` and `order_not_placed`.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "KrakenClient": "triplegain_fsm.kraken.client",
    "AddOrderAck": "triplegain_fsm.kraken.submission",
    "KrakenError": "triplegain_fsm.kraken.errors",
    "classify": "triplegain_fsm.kraken.errors",
    "Offset": "triplegain_fsm.kraken.order_request",
    "OrderRequest": "triplegain_fsm.kraken.order_request",
    "PairInfo": "triplegain_fsm.kraken.pairs",
    "PairRegistry": "triplegain_fsm.kraken.pairs",
    "WireOrder": "triplegain_fsm.kraken.params",
    "add_order_params": "triplegain_fsm.kraken.params",
    "Pacer": "triplegain_fsm.kraken.ratelimit",
    "ExecutionStream": "triplegain_fsm.kraken.stream",
    "StreamState": "triplegain_fsm.kraken.stream",
    "StreamBatch": "triplegain_fsm.kraken.stream_cache",
    "MergedReport": "triplegain_fsm.kraken.stream_cache",
    "set_testing": "triplegain_fsm.kraken.retry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'triplegain_fsm.kraken' has no attribute {name!r}")


__all__ = sorted(_LAZY)
