"""Who is calling the guard's API: bearer tokens checked against the approvers' hashes.

Why: lifting a freeze or moving traffic are human acts the guard performs on someone's
behalf, so every write names an approver and the audit trail records that name. The
configuration keeps only the hex SHA-256 of each approver's token (`ApproverConfig`), so a
leaked config file grants nothing. A presented token is hashed and compared with every
approver's hash in constant time (`hmac.compare_digest`, no early exit), so neither the
timing nor the order of approvers tells a caller how close a guess was. Tokens are never
logged, stored or echoed back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token: what `approvers.NAME.token_sha256` holds."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent or malformed.

    The scheme is case-insensitive (RFC 7235); the token must be one RFC 6750 b64token.
    """
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _B64TOKEN.fullmatch(token):
        return None
    return token


class Approvers:
    """The named humans who may act through the API, each known only by a token hash."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        """`hashes` maps an approver's name to the hex SHA-256 of their bearer token."""
        self._hashes: list[tuple[str, str]] = []
        for name, digest in hashes.items():
            normal = digest.strip().lower()
            if not _SHA256_HEX.fullmatch(normal):
                # Name the approver, never the value (it may be a pasted token by mistake).
                raise ValueError(f"approver {name!r}: token_sha256 is not 64 hex characters")
            self._hashes.append((name, normal))

    def __len__(self) -> int:
        return len(self._hashes)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._hashes]

    def identify(self, token: str) -> str | None:
        """The approver whose token this is, or None.

        Every approver's hash is compared, whether or not an earlier one matched.
        """
        digest = token_sha256(token)
        found: str | None = None
        for name, expected in self._hashes:
            if hmac.compare_digest(digest, expected) and found is None:
                found = name
        return found

    def who(self, authorization_header: str | None) -> str | None:
        """The approver named by an `Authorization` header's bearer token, or None."""
        token = bearer_token(authorization_header)
        return None if token is None else self.identify(token)
