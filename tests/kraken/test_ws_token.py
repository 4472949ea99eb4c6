"""KrakenClient.get_websockets_token: the token for the WebSocket v2, never in a log line or an error."""
from __future__ import annotations

import logging

import pytest

from triplegain_fsm.kraken import errors as E

pytestmark = pytest.mark.unit
TOKEN = "xeAQ/RCChBYNVh53sTv1yZ5H4wIbwDF20PiHtTF+4UI"


def test_returns_the_token_from_a_signed_private_call(kx, mock, client, caplog):
    caplog.set_level(logging.DEBUG)
    call = mock.post(kx.private_url("GetWebSocketsToken"), **kx.ok({"token": TOKEN, "expires": 900}))
    assert client.get_websockets_token() == TOKEN
    assert call.call_count == 1 and "API-Sign" in call.calls[0].request.headers
    assert set(kx.form(call.calls[0].request)) == {"nonce"}
    assert TOKEN not in caplog.text


def test_a_key_without_the_websocket_permission_gets_permission_denied(kx, mock, client):
    mock.post(kx.private_url("GetWebSocketsToken"), **kx.err("EGeneral:Permission denied"))
    with pytest.raises(E.PermissionDenied):
        client.get_websockets_token()


@pytest.mark.parametrize("result", [{}, {"token": ""}, {"token": 12345, "expires": 900}])
def test_a_result_without_a_token_is_malformed_and_echoes_nothing(kx, mock, client, result):
    mock.post(kx.private_url("GetWebSocketsToken"), **kx.ok(result))
    with pytest.raises(E.MalformedResponse) as raised:
        client.get_websockets_token()
    assert "12345" not in str(raised.value) and "GetWebSocketsToken" in str(raised.value)


def test_it_is_a_read_so_a_transient_failure_is_retried(kx, mock, client, clock):
    mock.post(kx.private_url("GetWebSocketsToken"), **kx.err("EService:Unavailable"))
    mock.post(kx.private_url("GetWebSocketsToken"), **kx.ok({"token": TOKEN, "expires": 900}))
    assert client.get_websockets_token() == TOKEN
    assert len(clock.sleeps) == 1
