"""triplegain-fsm: the order-execution core of the TripleGain bot.

    core = ExecutionCore.from_config("config/execution.yaml")
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=Decimal("500")))
"""
from typing import Any

from triplegain_fsm.bus import Message, MessageBus
from triplegain_fsm.enums import LegLocation, OrderRole, OrderSide, OrderStatus, OrderType, PositionStatus
from triplegain_fsm.errors import (
    CircuitOpenError,
    ConfigError,
    IllegalTransition,
    NotFoundError,
    PositionLimitError,
    ProposalError,
    TripleGainError,
    UnknownSymbolError,
    ValidationError,
)
from triplegain_fsm.models import ExecutionResult, Order, Position, TradeProposal

_LAZY = {
    "ExecutionCore": "triplegain_fsm.core",
    "OrderExecutionManager": "triplegain_fsm.orders",
    "PositionTracker": "triplegain_fsm.positions",
}


def __getattr__(name: str) -> Any:
    """The wiring (client, store, poller) loads on first use, so the pure parts import alone."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'triplegain_fsm' has no attribute {name!r}")


__all__ = [
    "CircuitOpenError", "ConfigError", "ExecutionCore", "ExecutionResult", "IllegalTransition", "LegLocation",
    "Message", "MessageBus", "NotFoundError", "Order", "OrderExecutionManager", "OrderRole", "OrderSide",
    "OrderStatus", "OrderType", "Position", "PositionLimitError", "PositionStatus", "PositionTracker",
    "ProposalError", "TradeProposal", "TripleGainError", "UnknownSymbolError", "ValidationError",
]
__version__ = "0.1.0"
