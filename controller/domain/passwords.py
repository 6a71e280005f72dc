"""Mailbox password hashes in a form Dovecot verifies itself: {ARGON2ID}.

Parameters follow OWASP's minimum for Argon2id (19 MiB, 2 passes). Parallelism must be 1:
Dovecot verifies through libsodium, which only supports one lane.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SCHEME_PREFIX = "{ARGON2ID}"

_hasher = PasswordHasher(
    time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)


def hash_password(password: str) -> str:
    return SCHEME_PREFIX + _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """For tests and tooling; Dovecot does the real verification at login."""
    if not stored.startswith(SCHEME_PREFIX):
        return False
    try:
        return _hasher.verify(stored.removeprefix(SCHEME_PREFIX), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
