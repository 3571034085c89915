"""CHAP (RFC 1994 as profiled by RFC 7143 §12.1.3) with MD5, SHA-1, SHA-256, SHA3-256.

CHAP_A numbers follow RFC 7143/IANA and Linux LIO: 5 = MD5, 6 = SHA-1, 7 = SHA-256,
8 = SHA3-256.  Binary values travel as ``0x<hex>`` or ``0b<base64>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from gateway.iscsi.errors import RemoteProtocolError

ALGORITHMS: dict[int, str] = {5: "md5", 6: "sha1", 7: "sha256", 8: "sha3_256"}
DIGEST_SIZE = {5: 16, 6: 20, 7: 32, 8: 32}
# Our preference when the initiator offers several: strongest first is what the RFC
# suggests, but the responder must pick the first acceptable value *in the offer order*.
DEFAULT_ALLOWED = (5, 6, 7, 8)
MAX_CHALLENGE = 1024


@dataclass(frozen=True)
class ChapSecret:
    """A user name and secret; ``__repr__`` hides the secret so it never reaches a log."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"ChapSecret(username={self.username!r}, password=***)"


@dataclass(frozen=True)
class ChapCredentials:
    """What a target checks (``incoming``) and, for mutual CHAP, proves (``outgoing``)."""

    incoming: ChapSecret
    outgoing: ChapSecret | None = None


def chap_response(algorithm: int, identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """H(identifier || secret || challenge)."""
    h = hashlib.new(ALGORITHMS[algorithm])
    h.update(bytes([identifier & 0xFF]))
    h.update(secret)
    h.update(challenge)
    return h.digest()


def encode_binary(value: bytes) -> str:
    return "0x" + value.hex()


def decode_binary(text: str, what: str) -> bytes:
    """Decode a 0x (hex) or 0b (base64) value; RemoteProtocolError if malformed."""
    try:
        if text[:2] in ("0x", "0X"):
            body = text[2:]
            if len(body) % 2:
                body = "0" + body
            return binascii.unhexlify(body)
        if text[:2] in ("0b", "0B"):
            return base64.b64decode(text[2:], validate=True)
    except (binascii.Error, ValueError):
        pass
    raise RemoteProtocolError(f"{what} is not a valid binary value")


def pick_algorithm(offer: str, allowed: tuple[int, ...] = DEFAULT_ALLOWED) -> int | None:
    """The first algorithm of the initiator's list that we allow, or None."""
    for item in offer.split(","):
        item = item.strip()
        if item.isdigit() and len(item) <= 3 and int(item) in allowed:
            return int(item)
    return None


class ChapAuthenticator:
    """Target side of one CHAP exchange (one connection's login)."""

    def __init__(self, credentials: ChapCredentials, allowed: tuple[int, ...] = DEFAULT_ALLOWED,
                 random: callable = os.urandom) -> None:
        self.credentials = credentials
        self.allowed = allowed
        self._random = random
        self.algorithm: int | None = None
        self.identifier = 0
        self.challenge = b""

    def challenge_for(self, offer: str) -> list[tuple[str, str]] | None:
        """Answer CHAP_A=<offer>: our algorithm, identifier and challenge (None = no match)."""
        alg = pick_algorithm(offer, self.allowed)
        if alg is None:
            return None
        self.algorithm = alg
        self.identifier = self._random(1)[0]
        self.challenge = self._random(max(16, DIGEST_SIZE[alg]))
        return [("CHAP_A", str(alg)), ("CHAP_I", str(self.identifier)),
                ("CHAP_C", encode_binary(self.challenge))]

    def verify(self, name: str | None, response: str | None, mutual_id: str | None,
               mutual_challenge: str | None) -> tuple[bool, list[tuple[str, str]]]:
        """Check the initiator's CHAP_N/CHAP_R; for mutual CHAP, answer its challenge.

        Returns (authenticated, pairs to send).  Never raises for a wrong password: a
        failed authentication is a login status, not a protocol error.
        """
        if self.algorithm is None or name is None or response is None:
            return False, []
        want = self.credentials.incoming
        try:
            got = decode_binary(response, "CHAP_R")
        except RemoteProtocolError:
            return False, []
        expected = chap_response(self.algorithm, self.identifier, want.password.encode(), self.challenge)
        name_ok = hmac.compare_digest(name.encode(), want.username.encode())
        if not (hmac.compare_digest(got, expected) and name_ok):
            return False, []
        if mutual_id is None and mutual_challenge is None:
            return True, []
        out = self.credentials.outgoing
        if out is None or mutual_id is None or mutual_challenge is None:
            return False, []
        if not mutual_id.isdigit() or int(mutual_id) > 255:
            return False, []
        try:
            their_challenge = decode_binary(mutual_challenge, "CHAP_C")
        except RemoteProtocolError:
            return False, []
        # A reflected challenge (our own sent back) would let an attacker make us compute
        # the answer it needs; an empty or oversize one is invalid (RFC 7143 §12.1.3).
        if their_challenge == self.challenge or not their_challenge or len(their_challenge) > MAX_CHALLENGE:
            return False, []
        if out.password == want.password:
            # Same secret in both directions makes reflection attacks possible.
            return False, []
        answer = chap_response(self.algorithm, int(mutual_id), out.password.encode(), their_challenge)
        return True, [("CHAP_N", out.username), ("CHAP_R", encode_binary(answer))]
