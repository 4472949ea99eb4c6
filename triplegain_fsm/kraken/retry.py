"""The retry policies, built on tenacity, and the switch that turns all waiting off in tests.

What may be retried is read from the error classes (`retry_safe`, `order_not_placed`)
and nowhere else. Every policy caps attempts AND total time; the time is measured
on the client's injectable clock, because tenacity's own `stop_after_delay` never
fires when sleep is faked.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from triplegain_fsm.kraken.errors import KrakenError, RateLimitError, Throttled

logger = logging.getLogger(__name__)

_testing = False


def set_testing(on: bool) -> None:
    """In tests: every retry and pacer wait returns at once (like stamina.set_testing)."""
    global _testing
    _testing = bool(on)


def is_testing() -> bool:
    return _testing


def retry_reads(exc: BaseException) -> bool:
    """Reads and idempotent calls: anything a retry may fix (transport, 5xx, busy, rate limits)."""
    return isinstance(exc, KrakenError) and exc.retry_safe


def retry_not_placed(exc: BaseException) -> bool:
    """Orders, cancels, amends: only answers that prove nothing was executed (rate limits, throttling)."""
    return isinstance(exc, KrakenError) and exc.retry_safe and exc.order_not_placed


class KrakenWait(wait_base):
    """Exponential backoff with jitter; `Throttled` waits until its timestamp; rate limits wait in the pacer."""

    def __init__(self, clock: Callable[[], float], initial: float = 0.5, maximum: float = 8.0,
                 jitter: float = 0.5) -> None:
        self._clock = clock
        # exponential plus uniform jitter, composed from waits every tenacity 8/9 release has
        # (wait_exponential_jitter's `initial` is deprecated in 9.2)
        self._backoff = tenacity.wait_exponential(multiplier=initial, max=maximum) + tenacity.wait_random(0, jitter)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        if _testing:
            return 0.0
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, Throttled) and exc.retry_at is not None:
            return max(0.0, exc.retry_at - self._clock())
        if isinstance(exc, RateLimitError):
            return 0.0   # the client saturated the pacer's counter: its acquire() does the waiting
        return self._backoff(retry_state)


class StopOnClock(stop_base):
    """Stop after `max_attempts`, or when the next wait would end past `max_seconds` from the start."""

    def __init__(self, clock: Callable[[], float], max_attempts: int, max_seconds: float) -> None:
        self._clock, self._max_attempts, self._max_seconds = clock, max_attempts, max_seconds
        self._start = clock()

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number >= self._max_attempts:
            return True
        return self._clock() - self._start + retry_state.upcoming_sleep > self._max_seconds


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    logger.warning("Kraken call failed (%s: %s); retry %d in %.2fs", type(exc).__name__, exc,
                   retry_state.attempt_number, retry_state.upcoming_sleep)


def make_retrying(should_retry: Callable[[BaseException], bool], *, clock: Callable[[], float],
                  sleep: Callable[[float], None], max_attempts: int, max_seconds: float) -> tenacity.Retrying:
    """One Retrying per call (its time budget starts now); reraises the last error, never RetryError."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(should_retry),
        wait=KrakenWait(clock),
        stop=StopOnClock(clock, max_attempts, max_seconds),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
