"""controller/domain/passwords.py: hashes Dovecot can verify ({ARGON2ID}, libsodium)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from controller.domain.passwords import hash_password, verify_password

# Dovecot verifies {ARGON2ID} through libsodium, which supports one lane only (p=1).
DOVECOT_PREFIX = "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"


def test_hash_has_the_dovecot_scheme_and_libsodium_compatible_parameters() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith(DOVECOT_PREFIX)
    # $argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>
    salt, digest = stored.removeprefix(DOVECOT_PREFIX).split("$")
    assert len(salt) >= 22  # 16 bytes of salt, base64 without padding
    assert len(digest) >= 43  # 32 bytes of hash


def test_hash_is_a_standard_argon2id_hash_without_the_prefix() -> None:
    stored = hash_password("correct horse battery")
    # Any Argon2 implementation (libsodium in Dovecot) must accept the part after the prefix.
    assert PasswordHasher().verify(stored.removeprefix("{ARGON2ID}"), "correct horse battery")


@pytest.mark.parametrize("password", ["correct horse battery", "pässwörd ünïcode 🔑", "x" * 1024])
def test_verify_accepts_the_right_password_only(password: str) -> None:
    stored = hash_password(password)
    assert verify_password(stored, password) is True
    assert verify_password(stored, password + "x") is False
    assert verify_password(stored, password[:-1]) is False
    assert verify_password(stored, "") is False


def test_verify_refuses_hashes_without_the_scheme_prefix() -> None:
    stored = hash_password("correct horse battery")
    assert verify_password(stored.removeprefix("{ARGON2ID}"), "correct horse battery") is False
    assert verify_password("{PLAIN}correct horse battery", "correct horse battery") is False


def test_verify_returns_false_for_a_corrupt_stored_hash() -> None:
    # verify_password answers a yes/no question: a damaged row is "no", not an exception.
    stored = hash_password("correct horse battery")
    assert verify_password(stored[:30], "correct horse battery") is False
    assert verify_password("{ARGON2ID}not-a-hash", "correct horse battery") is False


def test_two_hashes_of_the_same_password_differ_by_salt() -> None:
    first = hash_password("correct horse battery")
    second = hash_password("correct horse battery")
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]  # the salts
    assert verify_password(first, "correct horse battery")
    assert verify_password(second, "correct horse battery")
