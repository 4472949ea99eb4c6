"""Idempotent AddOrder: an order is placed at most once, even when its answer is lost.

Every submission carries the order's `cl_ord_id` and a `deadline` a few seconds
ahead, after which Kraken's engine refuses it. When the outcome is unknown (timeout,
dropped connection, 5xx, busy, malformed or unrecognised answer) the order is never
resent blindly:

1. look it up by cl_ord_id (OpenOrders, then ClosedOrders), retrying the look-up;
2. found -> it was placed: return its txid with `recovered=True`;
3. not found by a look-up that started after deadline + settle margin -> it was
   certainly not placed: resend (fresh nonce, fresh deadline), up to `max_submissions`;
4. look-ups keep failing -> `OrderOutcomeUnknown`: the core parks the order in
   SUBMITTED_UNKNOWN and lets reconciliation settle it.

Each submission is carried by a `Sender` (REST AddOrder by default; `kraken.ws_orders`
passes one that sends WebSocket v2 `add_order`): the look-up and the resend rule are
the same whatever carried it, and they always look up by REST.

A definite refusal (`OrderRejected`) is raised as is; rate limits and throttling
(which prove nothing was executed) are retried after the pacer waits.

The settle margin covers the short while a just-placed order can be missing from
REST results, plus clock skew between us and Kraken: if our clock runs ahead of
Kraken's by more than the margin, "not found" could be concluded too early.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

import attrs

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken.errors import KrakenError, MalformedResponse, OrderOutcomeUnknown, SubmissionNotPlaced
from triplegain_fsm.kraken.order_request import OrderRequest
from triplegain_fsm.kraken.pairs import PairInfo, PairRegistry
from triplegain_fsm.kraken.params import add_order_params
from triplegain_fsm.kraken.retry import retry_not_placed


class SubmitClient(Protocol):
    """What submitting needs from the REST client (KrakenClient implements it). The client holds
    the submitter, never the reverse: this module does not know the client module."""

    pairs: PairRegistry
    clock: Callable[[], float]

    def call(self, method: str, build: Callable[[], tuple[Mapping[str, Any], bool]], *, private: bool,
             should_retry: Callable[[BaseException], bool], pair: str | None = None,
             order_age: float | None = None) -> dict[str, Any]: ...

    def find_order(self, cl_ord_id: str) -> tuple[str, dict] | None: ...

    def pause(self, seconds: float) -> None: ...


logger = logging.getLogger(__name__)


@attrs.frozen
class AddOrderAck:
    """Kraken accepted the order (or, with `recovered`, a look-up found it after an unknown outcome)."""

    txid: str | None          # None for validate=true (nothing was placed)
    description: str
    recovered: bool = False


class Attempt:
    """One submission of one order. `stamped()` is the request as it goes out, with a fresh deadline.

    A sender calls `stamped()` right before each send (after any wait for budget), and
    `deadline` remembers the last one handed out: None means nothing was ever built for
    sending, so nothing can have reached the exchange.
    """

    def __init__(self, req: OrderRequest, pair: PairInfo, clock: Callable[[], float], deadline_seconds: float) -> None:
        self.request, self.pair = req, pair
        self._clock, self._seconds = clock, deadline_seconds
        self.deadline: float | None = None      # unix seconds

    def stamped(self) -> OrderRequest:
        self.deadline = self._clock() + self._seconds
        return attrs.evolve(self.request, pair=self.pair.altname,
                            deadline=datetime.fromtimestamp(self.deadline, tz=timezone.utc))


# How one submission goes out (REST by default; `kraken.ws_orders` sends over the WebSocket).
# It returns the ack or raises a KrakenError, which the submitter settles by cl_ord_id.
Sender = Callable[[Attempt], AddOrderAck]


class OrderSubmitter:
    """Runs the submit / look up / resend loop for one client, whatever carries each submission."""

    def __init__(self, client: SubmitClient, *, deadline_seconds: float = 5.0, settle_seconds: float = 3.0,
                 max_submissions: int = 2, lookup_attempts: int = 4) -> None:
        if not 2 <= deadline_seconds <= 60:
            raise ValidationError(f"deadline_seconds: Kraken accepts 2..60, got {deadline_seconds}")
        if max_submissions < 1 or lookup_attempts < 1 or settle_seconds < 0:
            raise ValidationError("max_submissions, lookup_attempts: must be >= 1; settle_seconds >= 0")
        self._client = client
        self.deadline_seconds, self.settle_seconds = deadline_seconds, settle_seconds
        self.max_submissions, self.lookup_attempts = max_submissions, lookup_attempts

    def submit(self, req: OrderRequest, send: Sender | None = None) -> AddOrderAck:
        """Place `req` at most once; `send` carries each submission (default: REST AddOrder)."""
        send = self.send_rest if send is None else send
        pair = self._client.pairs.resolve(req.pair)
        add_order_params(attrs.evolve(req, pair=pair.altname), pair)   # refuse a bad request before any send
        last_error: KrakenError | None = None
        for submission in range(1, self.max_submissions + 1):
            attempt = Attempt(req, pair, self._client.clock, self.deadline_seconds)
            try:
                return send(attempt)
            except KrakenError as exc:
                if exc.order_not_placed or req.validate or attempt.deadline is None:
                    raise
                last_error = exc
            logger.warning("AddOrder %s (submission %d): outcome unknown (%s); looking it up",
                           req.cl_ord_id, submission, type(last_error).__name__)
            found = self.settle(req.cl_ord_id, attempt.deadline)
            if found is not None:
                logger.info("AddOrder %s: found as %s after an unknown outcome", req.cl_ord_id, found[0])
                return AddOrderAck(txid=found[0], description=_description(found[1]), recovered=True)
            logger.warning("AddOrder %s: not placed (deadline passed, not found)", req.cl_ord_id)
        raise SubmissionNotPlaced(req.cl_ord_id, self.max_submissions, cause=last_error)

    def send_rest(self, attempt: Attempt) -> AddOrderAck:
        """One submission by REST AddOrder (paced and retried by the client on not-placed errors)."""
        def build() -> tuple[dict[str, str], bool]:
            wire = add_order_params(attempt.stamped(), attempt.pair)
            return wire.params, wire.as_json

        result = self._client.call("AddOrder", build, private=True, should_retry=retry_not_placed,
                                   pair=attempt.pair.altname)
        return _ack(result, attempt.request.validate)

    def settle(self, cl_ord_id: str, deadline: float) -> tuple[str, dict] | None:
        """Look `cl_ord_id` up (REST, whatever carried the submission) until it is found or `deadline`
        plus the settle margin has passed: found -> (txid, info); certainly not placed -> None;
        cannot tell -> OrderOutcomeUnknown."""
        settle_at = deadline + self.settle_seconds
        failures, polls = 0, 0
        last_error: KrakenError | None = None
        while True:
            started = self._client.clock()
            try:
                found = self._client.find_order(cl_ord_id)
            except KrakenError as exc:
                if exc.auth_failure:
                    raise OrderOutcomeUnknown(cl_ord_id, cause=exc) from None
                failures, last_error = failures + 1, exc
                if failures >= self.lookup_attempts:
                    raise OrderOutcomeUnknown(cl_ord_id, cause=exc) from None
                self._client.pause(min(8.0, 0.5 * 2 ** (failures - 1)))
                continue
            if found is not None:
                return found
            if started >= settle_at:
                return None
            polls += 1
            if polls > self.lookup_attempts:   # the clock is not reaching the deadline (waits switched off)
                raise OrderOutcomeUnknown(cl_ord_id, cause=last_error)
            self._client.pause(max(settle_at - self._client.clock(), 0.05))


def _ack(result: dict[str, Any], validate: bool) -> AddOrderAck:
    descr = result.get("descr")
    if not isinstance(descr, dict) or not isinstance(descr.get("order"), str):
        raise MalformedResponse("'descr.order' missing", endpoint="AddOrder")
    if validate:
        return AddOrderAck(txid=None, description=descr["order"])
    txids = result.get("txid")
    if not isinstance(txids, list) or not txids or not all(isinstance(t, str) for t in txids):
        raise MalformedResponse("'txid' must be a non-empty list of strings", endpoint="AddOrder")
    return AddOrderAck(txid=txids[0], description=descr["order"])


def _description(info: dict) -> str:
    descr = info.get("descr")
    order = descr.get("order") if isinstance(descr, dict) else None
    return order if isinstance(order, str) else ""
