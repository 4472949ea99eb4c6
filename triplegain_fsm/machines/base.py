"""Shared machinery for the order and position machines.

Design (measured in benchmarks/bench_orders.py):
- ONE plain `transitions.Machine` per entity type, models attached with
  `add_model(model, initial=saved_state)` and detached with `remove_model` when
  they reach a final state, so finished orders do not stay referenced.
- No LockedMachine: every trigger runs under the core's single state lock
  (see core.StateGuard). A per-model LockedMachine deadlocked on OCO
  (LIBRARY-NOTES), and a shared LockedMachine would be the same single lock
  with less control over what else (the store transaction, the indexes) it
  covers.
- Callbacks only touch the model and append a TransitionRecord to it; the
  caller persists the records with the model row in one SQLite transaction and
  publishes after commit. The machine does no I/O.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

import attrs
from transitions import Machine, MachineError

from triplegain_fsm.errors import IllegalTransition

# Where every model timestamp comes from: None = the real time. The simulator
# (triplegain_fsm.simulate) points it at its fake clock for the length of a run, so a seed's
# timestamps -- and every deadline computed from them -- are the same on every run.
WALL_CLOCK: Callable[[], float] | None = None


def utcnow() -> datetime:
    if WALL_CLOCK is not None:
        return datetime.fromtimestamp(WALL_CLOCK(), timezone.utc)
    return datetime.now(timezone.utc)



@attrs.frozen
class Edge:
    """One reviewed line of a transition table."""

    trigger: str
    source: str | tuple[str, ...]
    dest: str | None          # None: internal transition (state kept, callbacks run)
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    note: str = ""            # why the edge exists, when only a misbehaving world explains it

    def as_kwargs(self) -> dict[str, Any]:
        source = list(self.source) if isinstance(self.source, tuple) else self.source
        return {
            "trigger": self.trigger,
            "source": source,
            "dest": self.dest,
            "conditions": list(self.conditions),
            "unless": list(self.unless),
            "before": list(self.before),
            "after": list(self.after),
        }


@attrs.frozen
class TransitionRecord:
    entity: str
    entity_id: str
    from_state: str
    to_state: str
    trigger: str
    reason: str
    payload_digest: str | None
    at: datetime


def digest(payload: Any) -> str | None:
    """A short stable fingerprint of the exchange payload that caused a move (for audits)."""
    if payload is None:
        return None
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class MachineKind:
    """A shared machine for one entity type plus the rules for firing its triggers."""

    def __init__(self, entity: str, states: Iterable[str], initial: str, table: Iterable[Edge],
                 final_states: Iterable[str]) -> None:
        self.entity = entity
        self.states = list(states)
        self.table = tuple(table)
        self.final_states = frozenset(final_states)
        self.machine = Machine(
            model=None,
            states=self.states,
            initial=initial,
            transitions=[edge.as_kwargs() for edge in self.table],
            auto_transitions=False,
            send_event=False,
            after_state_change="_record_transition",
            prepare_event="_prepare_transition",
        )

    def attach(self, model: Any) -> None:
        """Bind a new or restored model in its saved state, without running callbacks."""
        model._pending_records = []
        self.machine.add_model(model, initial=model.state)

    def detach(self, model: Any) -> None:
        if model in self.machine.models:
            self.machine.remove_model(model)

    def is_attached(self, model: Any) -> bool:
        return any(m is model for m in self.machine.models)

    def reattach(self, model: Any) -> None:
        """Put back a model detached by a move that was rolled back (its triggers are still bound)."""
        if not self.is_attached(model):
            self.machine.models.append(model)

    def fire(self, model: Any, trigger: str, reason: str = "", payload: Any = None, **kwargs: Any) -> None:
        """Run one trigger; an illegal or refused move raises and leaves the model as it was."""
        if trigger not in self.machine.events:
            raise IllegalTransition(self.entity, model.id, model.state, trigger, "no such trigger")
        before = snapshot(model)
        model._transition_context = (trigger, reason, digest(payload))
        try:
            moved = getattr(model, trigger)(**kwargs)
        except MachineError as exc:
            restore(model, before)
            raise IllegalTransition(self.entity, model.id, before["state"], trigger, str(exc.value)) from None
        except Exception:  # a callback bug: undo, then re-raise it unchanged
            restore(model, before)
            raise
        finally:
            model._transition_context = None
        if not moved:
            restore(model, before)
            raise IllegalTransition(self.entity, model.id, before["state"], trigger,
                                    f"guard refused ({_describe(kwargs)})")
        if model.state in self.final_states:
            self.detach(model)


def snapshot(model: Any) -> dict[str, Any]:
    """The model's own data (attrs fields and unsaved records), not the triggers bound to it."""
    data = {f.name: getattr(model, f.name) for f in attrs.fields(type(model))}
    data["_pending_records"] = list(getattr(model, "_pending_records", []))
    return data


def restore(model: Any, data: dict[str, Any]) -> None:
    for name, value in data.items():
        setattr(model, name, value)


def _describe(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items())) or "no arguments"


class MachineModel:
    """Mixin with the two callbacks every machine model needs: stamp and record the move."""

    def _prepare_transition(self, *args: Any, **kwargs: Any) -> None:
        self._state_before = self.state  # type: ignore[attr-defined]

    def _record_transition(self, *args: Any, **kwargs: Any) -> None:
        trigger, reason, payload_digest = getattr(self, "_transition_context", None) or ("?", "", None)
        now = utcnow()
        self.updated_at = now  # type: ignore[attr-defined]
        self._pending_records.append(TransitionRecord(  # type: ignore[attr-defined]
            entity=self.ENTITY, entity_id=self.id,  # type: ignore[attr-defined]
            from_state=self._state_before, to_state=self.state,  # type: ignore[attr-defined]
            trigger=trigger, reason=reason, payload_digest=payload_digest, at=now,
        ))

    def drain_records(self) -> list[TransitionRecord]:
        records: list[TransitionRecord] = getattr(self, "_pending_records", [])
        self._pending_records: list[TransitionRecord] = []
        return records


# transitions logs every callback at INFO; one line per trigger is noise next to our own events table
logging.getLogger("transitions").setLevel(logging.WARNING)
