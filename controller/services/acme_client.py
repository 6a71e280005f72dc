"""Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 CA such as Pebble),
through the `acme` library (certbot's own client code: JWS, nonces, polling).

HTTP-01 only: tokens are written to a directory the port-80 responder serves, so any
process of the controller container (the API, the scheduler, the `mailyard` command) can
answer a challenge.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import ES256
from josepy.jwk import JWKEC

log = logging.getLogger(__name__)

KeyType = Literal["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"]
USER_AGENT = "mailyard (acme-python)"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


class AcmeFailure(Exception):
    """Issuance failed; `message` says where (directory, account, challenge, order)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AcmeAccountConfig:
    directory_url: str
    contact_email: str
    key_type: KeyType
    trust_file: Path | None  # CA bundle for the directory's HTTPS; None: system CAs


@dataclass(frozen=True)
class IssuedCertificate:
    key_pem: bytes
    fullchain_pem: bytes


class ChallengeStore:
    """HTTP-01 key authorizations by token, as files (0644: the responder only reads)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, token: str, key_authorization: str) -> None:
        if not _TOKEN.fullmatch(token):
            raise AcmeFailure(f"the CA sent a malformed challenge token {token!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / token).write_text(key_authorization)

    def get(self, token: str) -> str | None:
        if not _TOKEN.fullmatch(token):
            return None
        try:
            return (self.directory / token).read_text()
        except FileNotFoundError:
            return None

    def remove(self, token: str) -> None:
        if _TOKEN.fullmatch(token):
            (self.directory / token).unlink(missing_ok=True)


def new_private_key_pem(key_type: KeyType) -> bytes:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _account_key(path: Path) -> JWKEC:
    """The ACME account key (P-256), created once and kept in the state volume (0600)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = new_private_key_pem("ecdsa-p256")
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".account-")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AcmeFailure(f"{path} does not hold an ECDSA account key")
    return JWKEC(key=key)


class AcmeSession:
    """One conversation with the CA: directory, account, then orders."""

    def __init__(self, config: AcmeAccountConfig, account_key_file: Path) -> None:
        self.config = config
        key = _account_key(account_key_file)
        verify: Any = str(config.trust_file) if config.trust_file else True
        network = client.ClientNetwork(
            key, alg=ES256, verify_ssl=cast(bool, verify), user_agent=USER_AGENT
        )
        try:
            directory = client.ClientV2.get_directory(config.directory_url, network)
        except Exception as exc:  # requests, TLS and JSON errors all mean the same here
            raise AcmeFailure(
                f"cannot read the ACME directory {config.directory_url}: {exc}"
            ) from exc
        self.directory = directory
        self.client = client.ClientV2(directory, net=network)
        self._register()

    def _register(self) -> None:
        registration = messages.NewRegistration.from_data(
            email=self.config.contact_email or None, terms_of_service_agreed=True
        )
        try:
            self.client.new_account(registration)
        except errors.ConflictError as existing:
            # The key already has an account: use it.
            resource = messages.RegistrationResource(
                uri=existing.location, body=messages.Registration()
            )
            try:
                self.client.net.account = self.client.query_registration(resource)
            except (messages.Error, errors.Error, requests.RequestException) as exc:
                raise AcmeFailure(f"cannot use the existing ACME account: {exc}") from exc
        except (messages.Error, errors.Error, requests.RequestException) as exc:
            raise AcmeFailure(f"the CA refused the account: {exc}") from exc

    @property
    def offers_renewal_info(self) -> bool:
        # Directory has no __contains__ (`in` would iterate it by index).
        try:
            self.directory["renewalInfo"]
        except KeyError:
            return False
        return True

    def suggested_renewal(self, cert_pem: bytes) -> datetime | None:
        """ACME Renewal Information (RFC 9773): a time in the CA's suggested window."""
        if not self.offers_renewal_info:
            return None
        try:
            suggested, _next_query = self.client.renewal_time(cert_pem)
        except (errors.Error, messages.Error, OSError, ValueError) as exc:
            # A CA without renewal information for this certificate is not an error.
            log.info("no renewal information from the CA: %s", exc)
            return None
        return suggested

    def issue(
        self, names: list[str], challenges_dir: ChallengeStore, timeout: float = 120.0
    ) -> IssuedCertificate:
        key_pem = new_private_key_pem(self.config.key_type)
        csr_pem = crypto_util.make_csr(key_pem, names)
        try:
            order = self.client.new_order(csr_pem)
        except (messages.Error, errors.Error, requests.RequestException) as exc:
            raise AcmeFailure(f"the CA refused the order for {', '.join(names)}: {exc}") from exc
        tokens: list[str] = []
        try:
            for authorization in order.authorizations:
                challenge = _http01(authorization)
                response, validation = challenge.response_and_validation(self.client.net.key)
                token = challenge.chall.encode("token")
                challenges_dir.put(token, validation)
                tokens.append(token)
                self.client.answer_challenge(challenge, response)
            # The library compares its deadline with naive local time.
            deadline = datetime.now() + timedelta(seconds=timeout)
            order = self.client.poll_and_finalize(order, deadline=deadline)
        except errors.ValidationError as exc:
            raise AcmeFailure(_validation_problem(exc)) from exc
        except errors.TimeoutError as exc:
            raise AcmeFailure(f"the CA did not finish within {timeout:.0f}s") from exc
        except errors.IssuanceError as exc:
            raise AcmeFailure(f"the CA refused to issue: {exc.error}") from exc
        except (messages.Error, errors.Error) as exc:
            raise AcmeFailure(f"the CA refused the order: {exc}") from exc
        except requests.RequestException as exc:
            raise AcmeFailure(f"cannot reach the CA: {exc}") from exc
        finally:
            for token in tokens:
                challenges_dir.remove(token)
        return IssuedCertificate(key_pem=key_pem, fullchain_pem=order.fullchain_pem.encode())


def _http01(authorization: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    name = authorization.body.identifier.value
    raise AcmeFailure(f"the CA offers no HTTP-01 challenge for {name}")


def _validation_problem(exc: errors.ValidationError) -> str:
    problems = []
    for authorization in exc.failed_authzrs:
        for challenge in authorization.body.challenges:
            if challenge.error is not None:
                detail = challenge.error.detail or str(challenge.error)
                problems.append(f"{authorization.body.identifier.value}: {detail}")
    return "the CA could not validate " + ("; ".join(problems) or "the challenges")
