"""Every error the Kraken package raises, and the ONE table that says what a retry may do.

Two families live here:

* `KrakenError`: the exchange (or the road to it) answered with a failure. Each class
  carries three class attributes that the retry policy and the core read, and nothing
  else decides retries:

  - `retry_safe`: waiting and asking again may succeed (rate limits, 5xx, timeouts).
  - `outcome_unknown`: for an AddOrder, the order may exist; the core must not mark
    it rejected, it must look it up (review practice 4: unknown is not rejection).
  - `auth_failure`: bad key / signature / nonce / permission, or the lockout they
    lead to; the circuit breaker counts these and stops calling.

  `order_not_placed` is True only under `OrderRejected`: Kraken definitely refused
  the request, so nothing was executed and the order can be marked REJECTED.

* `KrakenRequestError` (a `ValidationError`): we refused to send something, so it
  never left the process (a price in the wrong field, too many decimals, a flag that
  Kraken does not allow on this order type).

Messages carry the raw Kraken strings and the endpoint, never the API key or secret.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from triplegain_fsm.errors import ProposalError, TripleGainError, ValidationError


class KrakenError(TripleGainError):
    """Base of every failure answered by Kraken or by the transport to it."""

    retry_safe: bool = False
    outcome_unknown: bool = False
    auth_failure: bool = False
    order_not_placed: bool = False

    def __init__(self, message: str = "", *, raw: Iterable[str] = (), endpoint: str | None = None) -> None:
        self.raw: tuple[str, ...] = tuple(raw)
        self.endpoint = endpoint
        text = message or "; ".join(self.raw) or type(self).__name__
        super().__init__(f"{endpoint}: {text}" if endpoint else text)


# --- certainly not executed ----------------------------------------------------------

class OrderRejected(KrakenError):
    """Kraken definitely refused the request: nothing was executed, the order does not exist."""

    order_not_placed = True


class InvalidArguments(OrderRejected):
    """`EGeneral:Invalid arguments[:field]`: a bug in what we sent; a resend sends the same bug."""


class InsufficientFunds(OrderRejected):
    """`EOrder:Insufficient funds` (also the second full-size sell leg on a spot balance)."""


class OrderMinimumNotMet(OrderRejected):
    """`EOrder:Order minimum not met`: volume below the pair's ordermin."""


class CostMinimumNotMet(OrderRejected):
    """`EOrder:Cost minimum not met`: volume * price below the pair's costmin."""


class TickSizeCheckFailed(OrderRejected):
    """`EOrder:Tick size check failed`: price not a multiple of tick_size."""


class InvalidPrice(OrderRejected):
    """`EOrder:Invalid price[:detail]`, e.g. too many decimals for the pair."""


class OrdersLimitExceeded(OrderRejected):
    """`EOrder:Orders limit exceeded`: too many open orders on the pair."""


class PositionsLimitExceeded(OrderRejected):
    """`EOrder:Positions limit exceeded`."""


class MarginError(OrderRejected):
    """`EOrder:Margin*` (allowance exceeded, level too low, ...)."""


class CannotOpenPosition(OrderRejected):
    """`EOrder:Cannot open*` (position, opposing position)."""


class MarketCancelOnly(OrderRejected):
    """`EService:Market in cancel_only mode`: new orders refused until the market reopens."""


class MarketPostOnly(OrderRejected):
    """`EService:Market in post_only mode`: only post-only limit orders are accepted."""


class MarketRestricted(OrderRejected):
    """`EService:Market in limit_only mode` / `reduce_only mode`: this kind of order is refused for now."""


class ReduceOnlyRejected(OrderRejected):
    """`EOrder:Reduce only:...`: a reduce-only order found no position to reduce (it may already be closed)."""


class PostOnlyRejected(OrderRejected):
    """`EOrder:Post only order`: a post-only limit (or amend) would have taken liquidity."""


class DeadlineElapsed(OrderRejected):
    """`EService:Deadline elapsed`: the engine refused the order after its deadline.

    Retry-safe: the next submission carries a fresh deadline.
    """

    retry_safe = True


class UnknownAssetPair(OrderRejected):
    """`EQuery:Unknown asset pair`."""


class AuthError(OrderRejected):
    """The key, signature, nonce or permission was refused. Never retried: repeats lead to a lockout."""

    auth_failure = True


class PermissionDenied(AuthError):
    """`EGeneral:Permission denied`: the key lacks the permission for this call."""


class InvalidKey(AuthError):
    """`EAPI:Invalid key`."""


class InvalidSignature(AuthError):
    """`EAPI:Invalid signature`."""


class InvalidNonce(AuthError):
    """`EAPI:Invalid nonce`: another process may share the key, or a clock/scale mix-up."""


class TemporaryLockout(AuthError):
    """`EGeneral:Temporary lockout` (~15 min): stop calling and alert. Never retried."""


class MissingCredentials(AuthError):
    """A private call was attempted without an API key and secret; nothing was sent."""


class InvalidWsToken(OrderRejected):
    """`EAPI:Invalid token` / `ESession:Invalid session`: the WebSocket v2 token was refused
    (unused for 15 minutes, or invalidated by Kraken). Nothing was executed.

    Retry-safe with a FRESH token: the stream fetches one and reconnects.
    """

    retry_safe = True


class StreamNotConnected(OrderRejected):
    """A WebSocket v2 request was refused before sending: the stream is not connected.

    Nothing left the process, so the caller may send the request another way (REST) at once.
    """

    retry_safe = True


class RateLimitError(OrderRejected):
    """Refused for pace, not content: certainly not executed, and retry-safe after waiting."""

    retry_safe = True


class ApiRateLimitExceeded(RateLimitError):
    """`EAPI:Rate limit exceeded`: the per-key REST counter is full."""


class TradingRateLimitExceeded(RateLimitError):
    """`EOrder:Rate limit exceeded`: the per-pair trading counter is full."""


class Throttled(RateLimitError):
    """`EService: Throttled: <unix ts>`: too many concurrent requests; retry after `retry_at`."""

    def __init__(self, message: str = "", *, raw: Iterable[str] = (), endpoint: str | None = None) -> None:
        super().__init__(message, raw=raw, endpoint=endpoint)
        self.retry_at: float | None = _throttled_until(self.raw)


# --- the order may exist ---------------------------------------------------------------

class OutcomeUnknownError(KrakenError):
    """No definite answer: for an AddOrder the order may exist and must be looked up."""

    outcome_unknown = True
    retry_safe = True


class ServiceUnavailable(OutcomeUnknownError):
    """`EService:Unavailable`."""


class ServiceBusy(OutcomeUnknownError):
    """`EService:Busy`."""


class InternalError(OutcomeUnknownError):
    """`EGeneral:Internal error`."""


class TransportError(OutcomeUnknownError):
    """The HTTP exchange itself failed: we cannot know what Kraken did with the request."""

    retry_safe = False


class RequestTimeout(TransportError):
    """No answer within the timeout (connect or read)."""

    retry_safe = True


class ConnectionFailed(TransportError):
    """Connection refused, reset or dropped; the request may have been sent before it broke."""

    retry_safe = True


class HttpError(TransportError):
    """A non-200 status: the request did not reach Kraken cleanly (or its answer did not reach us)."""

    def __init__(self, message: str = "", *, status: int, endpoint: str | None = None) -> None:
        self.status = status
        super().__init__(message or f"HTTP {status}", endpoint=endpoint)


class HttpServerError(HttpError):
    """HTTP 5xx, including Cloudflare's 52x: retry-safe for reads, outcome unknown for orders."""

    retry_safe = True


class HttpTooManyRequests(HttpError):
    """HTTP 429 from the edge (Cloudflare): slow down; a later retry may pass."""

    retry_safe = True


class MalformedResponse(TransportError):
    """The body was not Kraken's `{"error": [...], "result": {...}}` shape (or a field had the wrong type)."""

    retry_safe = True


class UnmappedKrakenError(KrakenError):
    """An error string missing from the table: raised, never returned as data.

    Not retry-safe (we do not know what it means) and outcome unknown (so an
    AddOrder that got it is looked up, never assumed rejected).
    """

    outcome_unknown = True


# --- neither: the caller must reconcile ------------------------------------------------

class UnknownOrder(KrakenError):
    """`EOrder:Unknown order` / `EOrder:Invalid order`: the order is not (or no longer) open.

    NOT a successful cancel: it may have filled. The caller queries it and reconciles.
    """


class DuplicateOrder(KrakenError):
    """`EOrder:Duplicate order`: an OPEN order already carries this cl_ord_id.

    For an AddOrder it means an earlier submission did arrive: outcome unknown,
    so the submitter looks the order up instead of treating it as rejected.
    """

    outcome_unknown = True


# --- raised by add_order after settling an unknown outcome -----------------------------

class OrderOutcomeUnknown(KrakenError):
    """add_order could not settle whether the order exists: the core parks it in SUBMITTED_UNKNOWN."""

    outcome_unknown = True

    def __init__(self, cl_ord_id: str, *, cause: KrakenError | None = None) -> None:
        self.cl_ord_id = cl_ord_id
        self.cause = cause
        detail = f" (last error: {type(cause).__name__}: {cause})" if cause else ""
        super().__init__(f"order {cl_ord_id}: outcome unknown after look-ups{detail}", endpoint="AddOrder",
                         raw=cause.raw if cause else ())


class SubmissionNotPlaced(OrderRejected):
    """Every submission had an unknown outcome, and look-ups after each deadline proved none was placed.

    Retry-safe: the order does not exist, and the failures were the exchange's, so a
    later submission may succeed (and a circuit breaker should count this one).
    """

    retry_safe = True

    def __init__(self, cl_ord_id: str, submissions: int, *, cause: KrakenError | None = None) -> None:
        self.cl_ord_id = cl_ord_id
        self.submissions = submissions
        self.cause = cause
        super().__init__(f"order {cl_ord_id}: not placed after {submissions} submission(s) "
                         f"(last error: {type(cause).__name__ if cause else 'none'})",
                         endpoint="AddOrder", raw=cause.raw if cause else ())


# --- refused before sending ------------------------------------------------------------

class KrakenRequestError(ValidationError):
    """We refused to build or send a request: nothing left the process."""


class MissingPriceError(KrakenRequestError):
    """The order type needs a price (or offset) that the request does not carry."""


class UnexpectedPriceError(KrakenRequestError):
    """A price field is set that this order type does not use (the F01 bug: a trigger in the wrong field)."""


class IncompatibleFlagError(KrakenRequestError):
    """A flag Kraken does not allow here (viqc on a sell or on margin, post on a market order, ...)."""


class PrecisionError(KrakenRequestError):
    """More decimals than the pair accepts (lot_decimals for volume, pair_decimals for price)."""


class MinimumNotMetError(ProposalError):
    """The order is below the pair's minimum; caught before anything is sent."""


class VolumeBelowMinimum(MinimumNotMetError):
    """volume < ordermin."""


class CostBelowMinimum(MinimumNotMetError):
    """volume * price < costmin."""


# --- the table -------------------------------------------------------------------------

# Prefix (compared case-insensitively, spaces around ':' ignored) -> class.
# One line per Kraken string in kraken-api.md; the longest matching prefix wins.
ERROR_TABLE: tuple[tuple[str, type[KrakenError]], ...] = (
    ("EGeneral:Invalid arguments", InvalidArguments),
    ("EGeneral:Permission denied", PermissionDenied),
    ("EGeneral:Temporary lockout", TemporaryLockout),
    ("EGeneral:Internal error", InternalError),
    ("EOrder:Insufficient funds", InsufficientFunds),
    ("EOrder:Order minimum not met", OrderMinimumNotMet),
    ("EOrder:Cost minimum not met", CostMinimumNotMet),
    ("EOrder:Tick size check failed", TickSizeCheckFailed),
    ("EOrder:Invalid price", InvalidPrice),
    ("EOrder:Orders limit exceeded", OrdersLimitExceeded),
    ("EOrder:Positions limit exceeded", PositionsLimitExceeded),
    ("EOrder:Margin", MarginError),
    ("EOrder:Cannot open", CannotOpenPosition),
    ("EOrder:Rate limit exceeded", TradingRateLimitExceeded),
    ("EOrder:Unknown order", UnknownOrder),
    ("EOrder:Invalid order", UnknownOrder),     # newer spelling of "Unknown order"
    ("EAPI:Invalid key", InvalidKey),
    ("EAPI:Invalid signature", InvalidSignature),
    ("EAPI:Invalid nonce", InvalidNonce),
    ("EAPI:Rate limit exceeded", ApiRateLimitExceeded),
    ("EAPI:Invalid token", InvalidWsToken),       # WebSocket v2 only
    ("ESession:Invalid session", InvalidWsToken),  # WebSocket v2 only
    ("EService:Market in cancel_only mode", MarketCancelOnly),
    ("EService:Market in post_only mode", MarketPostOnly),
    ("EService:Market in limit_only mode", MarketRestricted),
    ("EService:Market in reduce_only mode", MarketRestricted),
    ("EOrder:Reduce only", ReduceOnlyRejected),
    ("EOrder:Post only order", PostOnlyRejected),
    ("EOrder:Duplicate order", DuplicateOrder),
    ("EService:Throttled", Throttled),           # Kraken writes "EService: Throttled: <ts>"
    ("EService:Deadline elapsed", DeadlineElapsed),
    ("EService:Unavailable", ServiceUnavailable),
    ("EService:Busy", ServiceBusy),
    ("EQuery:Unknown asset pair", UnknownAssetPair),
)


def _normalise(text: str) -> str:
    return re.sub(r"\s*:\s*", ":", text.strip()).lower()


_PREFIXES: tuple[tuple[str, type[KrakenError]], ...] = tuple(
    sorted(((_normalise(p), cls) for p, cls in ERROR_TABLE), key=lambda item: -len(item[0]))
)


def class_for(error_string: str) -> type[KrakenError]:
    """The class for one Kraken error string (UnmappedKrakenError when no prefix matches)."""
    text = _normalise(error_string)
    for prefix, cls in _PREFIXES:
        if text.startswith(prefix):
            return cls
    return UnmappedKrakenError


def _severity(cls: type[KrakenError]) -> int:
    """Which class speaks for a multi-error answer: the one that demands the most caution."""
    if issubclass(cls, TemporaryLockout):
        return 0
    if cls.auth_failure:
        return 1
    if cls.outcome_unknown:
        return 2
    return 3


def classify(error_strings: Sequence[str], endpoint: str | None = None) -> KrakenError:
    """Turn Kraken's `error` list into ONE exception carrying every raw string.

    With several strings the most cautious class wins (lockout, then auth, then
    outcome-unknown, then the first listed), so no caller treats an ambiguous answer
    as a clean rejection.
    """
    strings = [str(s) for s in error_strings]
    if not strings:
        raise ValueError("classify() needs at least one error string")
    classes = [class_for(s) for s in strings]
    chosen = min(range(len(classes)), key=lambda i: (_severity(classes[i]), i))
    return classes[chosen](raw=strings, endpoint=endpoint)


def _throttled_until(raw: Sequence[str]) -> float | None:
    """The unix time at the end of `EService: Throttled: <ts>`, if it is there and numeric."""
    for text in raw:
        match = re.search(r"throttled\s*:\s*([0-9]+(?:\.[0-9]+)?)", text, re.IGNORECASE)
        if match:
            return float(match.group(1))  # float-ok: a unix time
    return None
