"""API-Key, API-Sign and nonce checks, as Kraken makes them, over the exact bytes received.

The signature is recomputed with the library's own `kraken.signing.sign` from
the body as it arrived, so a client that signs one body and sends another
(re-encoding, reordering) fails here as it would at Kraken. Nonces must grow
strictly per key; one is consumed only by a request whose signature is valid.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import threading
from collections.abc import Mapping

from triplegain_fsm.errors import ConfigError
from triplegain_fsm.kraken.signing import sign
from triplegain_fsm.paper.errors import INVALID_KEY, INVALID_NONCE, INVALID_SIGNATURE, KrakenRejection

MAX_NONCE = 2**64 - 1


def header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


class Authenticator:
    def __init__(self, api_key: str, api_secret: str) -> None:
        try:
            base64.b64decode(api_secret, validate=True)
        except binascii.Error:
            raise ConfigError("api_secret: must be base64, like a Kraken secret") from None
        self.api_key = api_key
        self._secret = api_secret
        self._last_nonce = 0
        self._lock = threading.Lock()

    def check(self, path: str, headers: Mapping[str, str], body: bytes, params: Mapping[str, str]) -> None:
        if header(headers, "API-Key") != self.api_key:
            raise KrakenRejection(INVALID_KEY)
        nonce_text = params.get("nonce", "")
        if not nonce_text.isdigit() or int(nonce_text) > MAX_NONCE:
            raise KrakenRejection(INVALID_NONCE)
        expected = sign(path, nonce_text, body.decode("utf-8"), self._secret)
        if not hmac.compare_digest((header(headers, "API-Sign") or "").encode(), expected.encode()):
            raise KrakenRejection(INVALID_SIGNATURE)
        with self._lock:
            if int(nonce_text) <= self._last_nonce:
                raise KrakenRejection(INVALID_NONCE)
            self._last_nonce = int(nonce_text)
