"""In-process publish/subscribe for `execution` events and `risk_alerts`.

Delivery is synchronous in the publishing thread, and the core publishes only
after the state it reports is committed and its state lock released, so a
subscriber may call back into the core. A subscriber that raises is logged
and isolated: it never breaks the poller or the other subscribers.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from triplegain_fsm.models import utcnow

log = logging.getLogger(__name__)

EXECUTION = "execution"
RISK_ALERTS = "risk_alerts"
TOPICS = frozenset({EXECUTION, RISK_ALERTS})


@attrs.frozen
class Message:
    topic: str
    payload: dict[str, Any]
    at: datetime = attrs.field(factory=utcnow)
    source: str = "triplegain_fsm"


Subscriber = Callable[[Message], Any]


class MessageBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {topic: [] for topic in TOPICS}
        self._lock = threading.Lock()
        self.delivery_failures = 0

    def subscribe(self, topic: str, callback: Subscriber) -> None:
        if topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}; topics are {sorted(TOPICS)}")
        if not callable(callback):
            raise TypeError("callback must be callable")
        with self._lock:
            self._subscribers[topic] = [*self._subscribers[topic], callback]

    def unsubscribe(self, topic: str, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers[topic] = [cb for cb in self._subscribers.get(topic, []) if cb is not callback]

    def publish(self, topic: str, payload: dict[str, Any]) -> Message:
        message = Message(topic=topic, payload=payload)
        for callback in self._subscribers.get(topic, []):
            try:
                callback(message)
            except Exception:  # a subscriber's bug must not break the core; it is logged, not hidden
                self.delivery_failures += 1
                log.exception("subscriber %r failed on %s message", callback, topic)
        return message
