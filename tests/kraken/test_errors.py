"""Every Kraken error string maps to one class with the right retry/outcome/auth flags (F13: case-insensitive)."""
from __future__ import annotations

import pytest

from triplegain_fsm.errors import TripleGainError
from triplegain_fsm.kraken import errors as E

pytestmark = pytest.mark.unit

# (string as Kraken sends it, class, retry_safe, outcome_unknown, auth_failure, order_not_placed)
CASES = [
    ("EGeneral:Invalid arguments", E.InvalidArguments, False, False, False, True),
    ("EGeneral:Invalid arguments:volume", E.InvalidArguments, False, False, False, True),
    ("EOrder:Insufficient funds", E.InsufficientFunds, False, False, False, True),
    ("EOrder:Order minimum not met", E.OrderMinimumNotMet, False, False, False, True),
    ("EOrder:Cost minimum not met", E.CostMinimumNotMet, False, False, False, True),
    ("EOrder:Tick size check failed", E.TickSizeCheckFailed, False, False, False, True),
    ("EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals.", E.InvalidPrice,
     False, False, False, True),
    ("EOrder:Orders limit exceeded", E.OrdersLimitExceeded, False, False, False, True),
    ("EOrder:Positions limit exceeded", E.PositionsLimitExceeded, False, False, False, True),
    ("EOrder:Margin allowance exceeded", E.MarginError, False, False, False, True),
    ("EOrder:Margin level too low", E.MarginError, False, False, False, True),
    ("EOrder:Cannot open position", E.CannotOpenPosition, False, False, False, True),
    ("EOrder:Cannot open opposing position", E.CannotOpenPosition, False, False, False, True),
    ("EGeneral:Permission denied", E.PermissionDenied, False, False, True, True),
    ("EAPI:Invalid key", E.InvalidKey, False, False, True, True),
    ("EAPI:Invalid signature", E.InvalidSignature, False, False, True, True),
    ("EAPI:Invalid nonce", E.InvalidNonce, False, False, True, True),
    ("EAPI:Invalid token", E.InvalidWsToken, True, False, False, True),
    ("ESession:Invalid session", E.InvalidWsToken, True, False, False, True),
    ("EService:Market in cancel_only mode", E.MarketCancelOnly, False, False, False, True),
    ("EService:Market in post_only mode", E.MarketPostOnly, False, False, False, True),
    ("EService:Market in limit_only mode", E.MarketRestricted, False, False, False, True),
    ("EService:Market in reduce_only mode", E.MarketRestricted, False, False, False, True),
    ("EOrder:Reduce only:No position exists", E.ReduceOnlyRejected, False, False, False, True),
    ("EOrder:Post only order", E.PostOnlyRejected, False, False, False, True),
    ("EOrder:Duplicate order", E.DuplicateOrder, False, True, False, False),
    ("EAPI:Rate limit exceeded", E.ApiRateLimitExceeded, True, False, False, True),
    ("EOrder:Rate limit exceeded", E.TradingRateLimitExceeded, True, False, False, True),
    ("EService: Throttled: 1700000030", E.Throttled, True, False, False, True),
    ("EService:Deadline elapsed", E.DeadlineElapsed, True, False, False, True),
    ("EQuery:Unknown asset pair", E.UnknownAssetPair, False, False, False, True),
    ("EService:Unavailable", E.ServiceUnavailable, True, True, False, False),
    ("EService:Busy", E.ServiceBusy, True, True, False, False),
    ("EGeneral:Internal error", E.InternalError, True, True, False, False),
    ("EGeneral:Temporary lockout", E.TemporaryLockout, False, False, True, True),
    ("EOrder:Unknown order", E.UnknownOrder, False, False, False, False),
    ("EOrder:Invalid order", E.UnknownOrder, False, False, False, False),
]


@pytest.mark.parametrize(("text", "cls", "retry_safe", "unknown", "auth", "not_placed"), CASES)
def test_each_string_maps_to_its_class_and_flags(text, cls, retry_safe, unknown, auth, not_placed):
    exc = E.classify([text], endpoint="AddOrder")
    assert type(exc) is cls
    assert (exc.retry_safe, exc.outcome_unknown, exc.auth_failure, exc.order_not_placed) == (
        retry_safe, unknown, auth, not_placed)
    assert exc.raw == (text,)
    assert text in str(exc) and "AddOrder" in str(exc)
    assert isinstance(exc, E.KrakenError) and isinstance(exc, TripleGainError)


@pytest.mark.parametrize(("text", "cls", *"abcd"), CASES)
def test_case_and_spacing_variants_map_the_same(text, cls, a, b, c, d):
    for variant in (text.upper(), text.lower(), text.replace(":", " : "), "  " + text + "  "):
        assert E.class_for(variant) is cls, variant


def test_every_table_row_is_covered_by_a_case():
    covered = {E._normalise(text) for text, *_ in CASES}
    for prefix, _cls in E.ERROR_TABLE:
        assert any(c.startswith(E._normalise(prefix)) for c in covered), prefix


def test_invalid_price_does_not_swallow_invalid_order():
    assert E.class_for("EOrder:Invalid price") is E.InvalidPrice
    assert E.class_for("EOrder:Invalid order") is E.UnknownOrder


@pytest.mark.parametrize("text", ["EGeneral:Unknown method", "EFuture:Something new", "garbage", "",
                                  "WGeneral:Some warning"])
def test_unmapped_strings_give_unmapped_error_not_data(text):
    exc = E.classify([text])
    assert type(exc) is E.UnmappedKrakenError
    assert not exc.retry_safe and exc.outcome_unknown and not exc.order_not_placed
    assert exc.raw == (text,)


def test_classify_needs_a_string():
    with pytest.raises(ValueError):
        E.classify([])


def test_throttled_carries_retry_at():
    exc = E.classify(["EService: Throttled: 1700000030"])
    assert isinstance(exc, E.Throttled) and exc.retry_at == 1700000030.0
    assert E.classify(["EService:Throttled"]).retry_at is None


def test_with_several_errors_the_most_cautious_class_wins_and_all_strings_are_kept():
    strings = ["EOrder:Insufficient funds", "EService:Busy", "EAPI:Invalid nonce", "EGeneral:Temporary lockout"]
    exc = E.classify(strings)
    assert type(exc) is E.TemporaryLockout and exc.raw == tuple(strings)
    assert type(E.classify(strings[:3])) is E.InvalidNonce
    assert type(E.classify(strings[:2])) is E.ServiceBusy
    assert type(E.classify(["EGeneral:Invalid arguments:price", "EGeneral:Invalid arguments:volume"])) \
        is E.InvalidArguments


def test_transport_classes_are_distinct_and_outcome_unknown():
    classes = [E.RequestTimeout, E.ConnectionFailed, E.HttpServerError, E.MalformedResponse]
    assert len(set(classes)) == 4
    for cls in classes:
        assert cls.outcome_unknown and cls.retry_safe and not cls.order_not_placed
    exc = E.HttpServerError(status=520, endpoint="Ticker")
    assert exc.status == 520 and "520" in str(exc)
    assert not issubclass(E.RequestTimeout, E.ConnectionFailed)


def test_grouping_lets_callers_ask_whether_the_order_exists():
    assert issubclass(E.InsufficientFunds, E.OrderRejected)
    assert not issubclass(E.ServiceBusy, E.OrderRejected)
    unknown = E.OrderOutcomeUnknown("cl-1", cause=E.RequestTimeout("read timed out"))
    assert unknown.cl_ord_id == "cl-1" and unknown.outcome_unknown and not unknown.order_not_placed
    gave_up = E.SubmissionNotPlaced("cl-2", 2, cause=E.ServiceBusy(raw=["EService:Busy"]))
    assert gave_up.order_not_placed and gave_up.cl_ord_id == "cl-2" and gave_up.raw == ("EService:Busy",)


def test_request_errors_are_validation_errors_and_minimums_are_proposal_errors():
    from triplegain_fsm.errors import ProposalError, ValidationError
    assert issubclass(E.MissingPriceError, ValidationError)
    assert issubclass(E.VolumeBelowMinimum, ProposalError)
    assert not issubclass(E.KrakenRequestError, E.KrakenError)
