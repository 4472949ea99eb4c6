"""The one way state changes: a unit of work under the core's state lock.

Inside a unit the caller fires machine triggers, raises alerts and queues
store writes (fills, work records). When the unit ends, every touched order
and position row, every transition record, alert and queued write goes to
SQLite in ONE transaction — or none at all when nothing changed, so a
decision that changes nothing costs no commit. Only after the commit, and
after the lock is released, are the messages published. If anything raises,
nothing is written and the touched models are restored in memory, so the
store, the machines and the bus never disagree.

The lock is re-entrant and shared by orders, positions, ticks and the poller:
it is held for microseconds (no HTTP ever runs under it), which is simpler to
prove correct than per-object locks and cheap next to any exchange call.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from triplegain_fsm.bus import EXECUTION, RISK_ALERTS, MessageBus
from triplegain_fsm.machines.base import MachineKind, restore, snapshot
from triplegain_fsm.machines.order_machine import ORDER_KIND
from triplegain_fsm.machines.position_machine import POSITION_KIND
from triplegain_fsm.models import Order, utcnow
from triplegain_fsm.store import Store

log = logging.getLogger(__name__)


def kind_of(model: Any) -> MachineKind:
    return ORDER_KIND if isinstance(model, Order) else POSITION_KIND


class Unit:
    def __init__(self, store: Store, alert_policy: AlertPolicy) -> None:
        self.store = store
        self.alert_policy = alert_policy
        self._touched: dict[int, Any] = {}
        self._snapshots: dict[int, dict[str, Any]] = {}
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._alerts: list[dict[str, Any]] = []
        self._outbox: list[dict[str, Any]] = []   # alerts to notify: stored with the alert, same transaction
        self._writes: list[Callable[[Store], Any]] = []
        self._new: set[int] = set()

    def write(self, operation: Callable[[Store], Any]) -> None:
        """Queue a store write for this unit's transaction."""
        self._writes.append(operation)

    @property
    def changed(self) -> bool:
        return bool(self._touched or self._alerts or self._outbox or self._writes)

    def touch(self, model: Any, new: bool = False) -> Any:
        """Mark a model as changed by this unit (`new`: created by it, never stored before)."""
        key = id(model)
        if key not in self._touched:
            self._touched[key] = model
            self._snapshots[key] = snapshot(model)
            if new:
                self._new.add(key)
        return model

    def fire(self, model: Any, trigger: str, reason: str = "", payload: Any = None, **kwargs: Any) -> None:
        self.touch(model)
        kind_of(model).fire(model, trigger, reason=reason, payload=payload, **kwargs)

    def alert(self, alert_type: str, severity: str, message: str, **details: Any) -> None:
        payload = {"alert_type": alert_type, "severity": severity, "message": message, **details}
        if not self.alert_policy.admit(payload):
            return
        if self.alert_policy.persist:
            self._alerts.append(payload)
        if self.alert_policy.notifies(payload):
            self._outbox.append(payload)
        self.messages.append((RISK_ALERTS, payload))

    def publish(self, payload: dict[str, Any]) -> None:
        self.messages.append((EXECUTION, payload))

    def flush(self) -> None:
        now = utcnow()
        for model in self._touched.values():
            records = model.drain_records()
            self.store.append_events(records)
            self.messages.extend((EXECUTION, _event_payload(model, record)) for record in records)
            if isinstance(model, Order):
                self.store.save_order(model)
            else:
                self.store.save_position(model)
        for payload in self._alerts:
            self.store.record_alert(payload, now)
        for payload in self._outbox:
            self.store.enqueue_notification(payload, now)
        for operation in self._writes:
            operation(self.store)

    def rollback(self, indexes: Indexes | None) -> None:
        """Undo in memory what the failed transaction did not write: models, machines, indexes."""
        for key, model in self._touched.items():
            kind = kind_of(model)
            if key in self._new:  # never stored: it must not exist anywhere
                kind.detach(model)
                if indexes is not None:
                    indexes.forget(model)
                continue
            restore(model, self._snapshots[key])
            if model.state not in kind.final_states:
                kind.reattach(model)
            if indexes is not None:
                indexes.reindex(model)


def _event_payload(model: Any, record: Any) -> dict[str, Any]:
    payload = {
        "event": f"{record.entity}_transition",
        "entity": record.entity,
        f"{record.entity}_id": record.entity_id,
        "from_state": record.from_state,
        "to_state": record.to_state,
        "trigger": record.trigger,
        "reason": record.reason,
        "symbol": model.symbol,
    }
    if isinstance(model, Order):
        payload.update(position_id=model.position_id, external_id=model.external_id, role=model.role.value,
                       filled_size=model.filled_size, size=model.size)
    else:
        payload.update(size=model.size, realized_pnl=model.realized_pnl)
    return payload


# What names the condition an alert is about. Every field that tells one condition from
# another must be here: a key that misses one (drift of asset A vs asset B) lets the first
# alert silence the others. Amounts and counters are not identity: a lasting condition whose
# numbers move is still the same condition.
IDENTITY_FIELDS = ("position_id", "order_id", "txid", "client_order_id", "asset", "kind", "symbol", "posid",
                   "position_ids", "ordertxid", "posids", "ordertxids", "txids")


def condition_key(payload: dict[str, Any]) -> tuple[Any, ...]:
    """The condition an alert is about: its type and every identity field it carries."""
    return (payload.get("alert_type"), *(_hashable(payload.get(name)) for name in IDENTITY_FIELDS))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class AlertPolicy:
    """What happens to an alert besides the bus: logged at its severity, stored, put in the
    notifications outbox at or above `notify_at` (None: no notifications), and not repeated for
    the same condition (`condition_key`) within `repeat_after` seconds."""

    LEVELS = {"critical": logging.CRITICAL, "high": logging.ERROR, "warning": logging.WARNING}
    RANKS = {"info": 0, "warning": 1, "high": 2, "critical": 3}

    def __init__(self, log_level: str = "WARNING", repeat_after: float = 0.0, persist: bool = True,
                 clock: Callable[[], float] = time.monotonic, notify_at: str | None = None) -> None:
        self.log_level = logging.getLevelName(log_level)
        self.repeat_after = repeat_after
        self.persist = persist
        self.clock = clock
        self.notify_rank = None if notify_at is None else self.RANKS[notify_at]
        self._last: dict[tuple[Any, ...], float] = {}

    def notifies(self, payload: dict[str, Any]) -> bool:
        """An admitted alert at or above the notifications' minimum severity goes to the outbox."""
        return self.notify_rank is not None and self.RANKS.get(payload.get("severity", ""), -1) >= self.notify_rank

    def admit(self, payload: dict[str, Any]) -> bool:
        """Log the alert; False when the same condition was alerted less than repeat_after ago."""
        level = self.LEVELS.get(payload.get("severity", ""), logging.INFO)
        if level >= self.log_level:
            log.log(level, "risk alert %s: %s", payload.get("alert_type"), payload.get("message"))
        key = condition_key(payload)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.repeat_after:
            return False
        self._last[key] = now
        if len(self._last) > 10_000:  # a long run meets many conditions: forget the ones past their interval
            self._last = {k: t for k, t in self._last.items() if now - t < self.repeat_after}
        return True


class Indexes(Protocol):
    """Where the managers keep models in memory; told when a failed unit undoes a change."""

    def reindex(self, model: Any) -> None: ...

    def forget(self, model: Any) -> None: ...


class StateGuard:
    """Owns the state lock, the store and the bus; hands out units of work."""

    def __init__(self, store: Store, bus: MessageBus, alert_policy: AlertPolicy | None = None) -> None:
        self.store = store
        self.bus = bus
        self.alert_policy = alert_policy or AlertPolicy()
        self.lock = threading.RLock()
        self._local = threading.local()
        self.indexes: Indexes | None = None   # set by the core once its managers exist

    @contextmanager
    def unit(self) -> Iterator[Unit]:
        outer = getattr(self._local, "unit", None)
        if outer is not None:  # nested: join the enclosing unit
            yield outer
            return
        with self.lock:
            unit = Unit(self.store, self.alert_policy)
            self._local.unit = unit
            try:
                yield unit
                if unit.changed:
                    with self.store.transaction():
                        unit.flush()
            except BaseException:
                unit.rollback(self.indexes)
                raise
            finally:
                self._local.unit = None
        for topic, payload in unit.messages:
            self.bus.publish(topic, payload)
