"""Errors the library raises to its caller (exchange errors live in kraken.errors).

All derive from TripleGainError so a bot can catch the library's failures in one
clause without catching its own bugs.
"""
from __future__ import annotations


class TripleGainError(Exception):
    """Base of every error this library raises on purpose."""


class ValidationError(TripleGainError, ValueError):
    """Bad input (proposal, config, exchange payload): nothing was changed."""


class ConfigError(ValidationError):
    """A config key is unknown or its value is bad; the message names the key."""


class ProposalError(ValidationError):
    """A TradeProposal cannot be executed as given; nothing was sent."""


class PositionLimitError(ProposalError):
    """Opening this position would exceed a configured limit."""


class UnknownSymbolError(ProposalError):
    """The symbol is not a tradable Kraken pair."""


class IllegalTransition(TripleGainError):
    """A machine was asked for a move its table does not allow; nothing changed."""

    def __init__(self, entity: str, entity_id: str, state: str, trigger: str, detail: str = "") -> None:
        self.entity, self.entity_id, self.state, self.trigger = entity, entity_id, state, trigger
        msg = f"{entity} {entity_id}: trigger {trigger!r} is not allowed in state {state}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class NotFoundError(TripleGainError, KeyError):
    """No order or position with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class CircuitOpenError(TripleGainError):
    """New entries are refused while the exchange circuit breaker is open."""
