"""How the paper exchange says no, and how it tells a transport to drop an answer.

Kraken refuses a request with an error string (`EOrder:Insufficient funds`), not
an HTTP status: the engine raises `KrakenRejection` carrying that exact string and
the API turns it into `{"error": [...]}`. Keeping the strings here, in one place,
makes it easy to check them against Kraken's documented list.
"""
from __future__ import annotations

INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
UNKNOWN_METHOD = "EGeneral:Unknown method"
PERMISSION_DENIED = "EGeneral:Permission denied"
UNKNOWN_PAIR = "EQuery:Unknown asset pair"
UNKNOWN_ASSET = "EQuery:Unknown asset"
UNKNOWN_ORDER = "EOrder:Unknown order"
INVALID_ORDER = "EOrder:Invalid order"
INSUFFICIENT_FUNDS = "EOrder:Insufficient funds"
ORDER_MINIMUM = "EOrder:Order minimum not met"
COST_MINIMUM = "EOrder:Cost minimum not met"
TICK_SIZE = "EOrder:Tick size check failed"
INVALID_PRICE = "EOrder:Invalid price"
DUPLICATE_ORDER = "EOrder:Duplicate order"
CANNOT_OPEN_POSITION = "EOrder:Cannot open position"
MARGIN_LEVEL_TOO_LOW = "EOrder:Margin level too low"
REDUCE_ONLY_NO_POSITION = "EOrder:Reduce only:No position exists"
ORDERS_LIMIT = "EOrder:Orders limit exceeded"
ORDER_RATE_LIMIT = "EOrder:Rate limit exceeded"
API_RATE_LIMIT = "EAPI:Rate limit exceeded"
INVALID_KEY = "EAPI:Invalid key"
INVALID_SIGNATURE = "EAPI:Invalid signature"
INVALID_NONCE = "EAPI:Invalid nonce"
DEADLINE_ELAPSED = "EService:Deadline elapsed"
UNAVAILABLE = "EService:Unavailable"


def invalid(field: str | None = None) -> KrakenRejection:
    """`EGeneral:Invalid arguments[:field]`: the shape Kraken uses for a bad parameter."""
    return KrakenRejection(f"{INVALID_ARGUMENTS}:{field}" if field else INVALID_ARGUMENTS)


class KrakenRejection(Exception):
    """A request the paper exchange refuses; `error` is the Kraken error string to answer with.

    Raised before any state changes, so a rejected request never leaves a half-made order.
    """

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class LostResponse(Exception):
    """The client must not get an answer: the transport turns this into a timeout.

    `acted` says whether the exchange processed the request first (the dangerous
    case for an order submission: it exists, but the client cannot know).
    """

    def __init__(self, method: str, acted: bool) -> None:
        what = "acted, then the response was lost" if acted else "request lost before the exchange acted"
        super().__init__(f"paper exchange {method}: {what}")
        self.method = method
        self.acted = acted
