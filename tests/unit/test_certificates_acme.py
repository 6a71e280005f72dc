"""Certificates from an ACME CA, and the admin's own: the ACME client's challenge and
error handling, the certificate files, the renewal rules and deployment of the
CertificateManager, the port-80 responder and /api/v1/certificates.

No CA is contacted. The ACME client runs against a stub of the `acme` library's ClientV2
(AcmeSession's own code stays real); the manager runs against a fake AcmeSession that
issues from a throwaway CA. Issuance from a real CA (Pebble) is covered by
tests/stack/test_certificates.py.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from acme import challenges, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fake_runtime import SERVICES, FakeContainer, FakeRuntime
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient as StarletteTestClient

from controller.api.responder import responder_app
from controller.db.models import ConfigApply
from controller.domain.setting_rows import load_stored, save_stored
from controller.engine import certificates as engine_module
from controller.engine.apply import ConfigEngine
from controller.engine.certificates import CertificateManager
from controller.errors import InvalidInput, Unavailable
from controller.runtime import Replica
from controller.services import acme_client
from controller.services import certificates as files
from controller.services.acme_client import (
    AcmeAccountConfig,
    AcmeFailure,
    AcmeSession,
    ChallengeStore,
    IssuedCertificate,
    new_private_key_pem,
)
from controller.settings import Settings

API = "/api/v1"
HOST = "mail.example.com"
T0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
DAYS_90 = timedelta(days=90)
P1, P2, D1, D2 = (
    "mailyard-postfix-1",
    "mailyard-postfix-2",
    "mailyard-dovecot-1",
    "mailyard-dovecot-2",
)


# --- certificates for the tests ------------------------------------------------------------
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = _name("Throwaway Test CA")
CA_CERT = (
    x509.CertificateBuilder()
    .subject_name(CA_NAME)
    .issuer_name(CA_NAME)
    .public_key(CA_KEY.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
    .not_valid_after(datetime(2099, 1, 1, tzinfo=UTC))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(CA_KEY, hashes.SHA256())
)


def _sign(
    names: list[str],
    public_key: Any,
    not_before: datetime,
    lifetime: timedelta,
    *,
    self_signed_with: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    subject = _name(names[0] if names else "no names")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if self_signed_with else CA_NAME)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
    )
    if names:
        dns = [x509.DNSName(name) for name in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(dns), critical=False)
    return builder.sign(self_signed_with or CA_KEY, hashes.SHA256())


@dataclass(frozen=True)
class Pair:
    key_pem: bytes
    chain_pem: bytes  # the leaf, then (unless self-signed) the CA
    serial: str
    certificate: x509.Certificate


def make_cert(
    names: list[str],
    *,
    not_before: datetime = T0 - timedelta(hours=1),
    lifetime: timedelta = DAYS_90,
    self_signed: bool = False,
) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _sign(
        names, key.public_key(), not_before, lifetime, self_signed_with=key if self_signed else None
    )
    chain = _pem(leaf) + (b"" if self_signed else _pem(CA_CERT))
    return Pair(_key_pem(key), chain, f"{leaf.serial_number:X}", leaf)


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def _at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def _store_settings(sessions: sessionmaker[Session], **values: Any) -> None:
    """Settings as if applied earlier (the apply pipeline needs Docker to change them)."""
    with sessions.begin() as session:
        save_stored(session, {**load_stored(session), **values})


# --- ChallengeStore and keys ---------------------------------------------------------------
TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"


def test_challenge_store_serves_what_was_put_until_removed(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path / "challenges")
    assert store.get(TOKEN) is None
    store.put(TOKEN, f"{TOKEN}.thumbprint")
    assert store.get(TOKEN) == f"{TOKEN}.thumbprint"
    # The responder runs as another process: the file must be readable by it.
    assert stat.S_IMODE((tmp_path / "challenges" / TOKEN).stat().st_mode) & 0o044 == 0o044
    store.remove(TOKEN)
    assert store.get(TOKEN) is None
    store.remove(TOKEN)  # removing twice is harmless


@pytest.mark.parametrize(
    "token",
    [
        "../../secrets/db-postfix-password",
        "..",
        "short",  # fewer than 16 characters
        "a" * 129,
        "abc.defghijklmnopqrst",
        "abcdefghijklmnop/qrst",
        "abcdefghijklmnopqrst\n",
        "abcdefghijklmnopqrst ",
        "",
    ],
)
def test_challenge_store_refuses_malformed_tokens(tmp_path: Path, token: str) -> None:
    store = ChallengeStore(tmp_path / "state" / "challenges")
    # A file the token could reach if it were used as a path.
    outside = tmp_path / "state" / "secret"
    outside.parent.mkdir(parents=True)
    outside.write_text("do not serve")
    with pytest.raises(AcmeFailure, match="malformed challenge token"):
        store.put(token, "x")
    assert store.get(token) is None
    assert store.get("../secret") is None
    store.remove(token)
    store.remove("../secret")
    assert outside.read_text() == "do not serve"
    assert not (tmp_path / "state" / "challenges").exists() or not any(
        (tmp_path / "state" / "challenges").iterdir()
    )


def test_new_private_keys_are_unencrypted_pkcs8_of_the_asked_type() -> None:
    ecdsa = serialization.load_pem_private_key(new_private_key_pem("ecdsa-p256"), None)
    assert isinstance(ecdsa, ec.EllipticCurvePrivateKey)
    assert ecdsa.curve.name == "secp256r1"
    pem = new_private_key_pem("rsa-2048")
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert new_private_key_pem("ecdsa-p256") != new_private_key_pem("ecdsa-p256")


@pytest.mark.parametrize(("key_type", "bits"), [("rsa-3072", 3072), ("rsa-4096", 4096)])
def test_rsa_key_size_follows_the_key_type(
    monkeypatch: pytest.MonkeyPatch, key_type: Any, bits: int
) -> None:
    # Generating big RSA keys is slow: check the size asked for, return a small key.
    asked: list[int] = []
    real = rsa.generate_private_key

    def generate(public_exponent: int, key_size: int) -> rsa.RSAPrivateKey:
        asked.append(key_size)
        return real(public_exponent=public_exponent, key_size=2048)

    monkeypatch.setattr(acme_client.rsa, "generate_private_key", generate)
    new_private_key_pem(key_type)
    assert asked == [bits]


# --- AcmeSession against a stub of the acme library's client ----------------------------------
@dataclass
class StubCA:
    """What the stub ClientV2 answers, and what it saw."""

    store: ChallengeStore | None = None
    directory: dict[str, Any] = field(
        default_factory=lambda: {"newOrder": "https://ca.test/new-order"}
    )
    account_conflict: bool = False
    refuse_account: bool = False
    offer_http01: bool = True
    token_bytes: dict[str, int] = field(default_factory=dict)  # name -> token length
    refuse_order: bool = False
    order_error: Exception | None = None  # raised by new_order (not a messages.Error)
    finalize_error: Exception | None = None
    invalid_challenge: str | None = None  # a name whose validation fails
    suggestion: datetime | None = None
    renewal_error: Exception | None = None
    # What it saw:
    directory_urls: list[str] = field(default_factory=list)
    verify_ssl: list[Any] = field(default_factory=list)
    registrations: list[messages.NewRegistration] = field(default_factory=list)
    account: Any = None
    csr_names: list[list[str]] = field(default_factory=list)
    csr_keys: list[bytes] = field(default_factory=list)
    served: dict[str, str | None] = field(default_factory=dict)  # token -> store's answer
    expected: dict[str, str] = field(default_factory=dict)  # token -> key authorization
    renewal_asked: list[bytes] = field(default_factory=list)

    def client_class(self) -> type:
        ca = self

        class Client:
            @classmethod
            def get_directory(cls, url: str, net: Any) -> messages.Directory:
                ca.directory_urls.append(url)
                ca.verify_ssl.append(net.verify_ssl)
                return messages.Directory.from_json(ca.directory)

            def __init__(self, directory: messages.Directory, net: Any) -> None:
                self.directory = directory
                self.net = net

            def new_account(self, registration: messages.NewRegistration) -> Any:
                ca.registrations.append(registration)
                if ca.refuse_account:
                    raise messages.Error.with_code("invalidContact", detail="no such domain")
                if ca.account_conflict:
                    raise errors.ConflictError("https://ca.test/acct/7")
                return SimpleNamespace(uri="https://ca.test/acct/new")

            def query_registration(self, resource: messages.RegistrationResource) -> Any:
                ca.account = resource
                return resource

            def new_order(self, csr_pem: bytes) -> Any:
                if ca.order_error is not None:
                    raise ca.order_error
                if ca.refuse_order:
                    raise messages.Error.with_code("rejectedIdentifier", detail="no .test here")
                csr = x509.load_pem_x509_csr(csr_pem)
                san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                names = list(san.value.get_values_for_type(x509.DNSName))
                ca.csr_names.append(names)
                ca.csr_keys.append(_spki(csr.public_key()))
                return SimpleNamespace(
                    authorizations=[ca.authorization(name) for name in names],
                    csr=csr,
                )

            def answer_challenge(self, challenge: messages.ChallengeBody, response: Any) -> None:
                token = challenge.chall.encode("token")
                # What the port-80 responder serves while the CA validates.
                assert ca.store is not None
                ca.served[token] = ca.store.get(token)
                ca.expected[token] = challenge.chall.key_authorization(self.net.key)

            def poll_and_finalize(self, order: Any, deadline: datetime) -> Any:
                assert deadline > datetime.now()  # naive local time, as the library wants
                if ca.invalid_challenge is not None:
                    failed = ca.authorization(ca.invalid_challenge, error="Connection refused")
                    raise errors.ValidationError([failed])
                if ca.finalize_error is not None:
                    raise ca.finalize_error
                names = list(
                    order.csr.extensions.get_extension_for_class(
                        x509.SubjectAlternativeName
                    ).value.get_values_for_type(x509.DNSName)
                )
                leaf = _sign(names, order.csr.public_key(), datetime.now(UTC), DAYS_90)
                return SimpleNamespace(fullchain_pem=(_pem(leaf) + _pem(CA_CERT)).decode())

            def renewal_time(self, cert_pem: bytes) -> tuple[datetime | None, datetime]:
                ca.renewal_asked.append(cert_pem)
                if ca.renewal_error is not None:
                    raise ca.renewal_error
                return ca.suggestion, datetime.now()

        return Client

    def authorization(self, name: str, error: str | None = None) -> messages.AuthorizationResource:
        found = [
            messages.ChallengeBody(
                chall=challenges.DNS01(token=os.urandom(16)),
                uri="https://ca.test/chall/dns",
                status=messages.STATUS_PENDING,
            )
        ]
        if self.offer_http01:
            found.append(
                messages.ChallengeBody(
                    chall=challenges.HTTP01(token=os.urandom(self.token_bytes.get(name, 32))),
                    uri="https://ca.test/chall/http",
                    status=messages.STATUS_INVALID if error else messages.STATUS_PENDING,
                    error=messages.Error.with_code("connection", detail=error) if error else None,
                )
            )
        return messages.AuthorizationResource(
            uri=f"https://ca.test/authz/{name}",
            body=messages.Authorization(
                identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name),
                challenges=found,
                status=messages.STATUS_PENDING,
            ),
        )


@pytest.fixture
def stub_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StubCA:
    ca = StubCA(store=ChallengeStore(tmp_path / "challenges"))
    monkeypatch.setattr(acme_client.client, "ClientV2", ca.client_class())
    return ca


def _config(**overrides: Any) -> AcmeAccountConfig:
    values: dict[str, Any] = {
        "directory_url": "https://ca.test/directory",
        "contact_email": "postmaster@example.com",
        "key_type": "ecdsa-p256",
        "trust_file": None,
    }
    return AcmeAccountConfig(**{**values, **overrides})


def _session(tmp_path: Path, **overrides: Any) -> AcmeSession:
    return AcmeSession(_config(**overrides), tmp_path / "state" / "secrets" / "account.pem")


def test_session_creates_the_account_key_once_readable_by_root_only(
    stub_ca: StubCA, tmp_path: Path
) -> None:
    first = _session(tmp_path)
    key_file = tmp_path / "state" / "secrets" / "account.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["account.pem"]  # no temp file
    second = _session(tmp_path)
    assert first.client.net.key.thumbprint() == second.client.net.key.thumbprint()
    assert stub_ca.directory_urls == ["https://ca.test/directory"] * 2
    assert stub_ca.verify_ssl == [True, True]  # the system CAs
    registration = stub_ca.registrations[0]
    assert registration.terms_of_service_agreed is True
    assert registration.emails == ("postmaster@example.com",)


def test_session_refuses_an_account_key_that_is_not_ecdsa(stub_ca: StubCA, tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "secrets" / "account.pem"
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(new_private_key_pem("rsa-2048"))
    with pytest.raises(AcmeFailure, match="does not hold an ECDSA account key"):
        _session(tmp_path)


def test_session_trusts_the_given_ca_file_and_registers_without_contact(
    stub_ca: StubCA, tmp_path: Path
) -> None:
    trust = tmp_path / "trust.pem"
    _session(tmp_path, trust_file=trust, contact_email="")
    assert stub_ca.verify_ssl == [str(trust)]
    assert stub_ca.registrations[0].contact == ()


def test_session_reuses_the_existing_account_of_its_key(stub_ca: StubCA, tmp_path: Path) -> None:
    stub_ca.account_conflict = True
    session = _session(tmp_path)
    assert stub_ca.account.uri == "https://ca.test/acct/7"
    assert session.client.net.account is stub_ca.account


def test_session_reports_a_refused_account(stub_ca: StubCA, tmp_path: Path) -> None:
    stub_ca.refuse_account = True
    with pytest.raises(AcmeFailure, match="refused the account") as info:
        _session(tmp_path)
    assert "no such domain" in info.value.message


def test_unreachable_directory_is_an_acme_failure_naming_it(tmp_path: Path) -> None:
    # The real client, against a port nothing listens on: refused at once.
    url = "https://127.0.0.1:1/directory"
    with pytest.raises(AcmeFailure) as info:
        _session(tmp_path, directory_url=url)
    assert info.value.message.startswith(f"cannot read the ACME directory {url}: ")


def test_issue_answers_http01_challenges_then_removes_them(stub_ca: StubCA, tmp_path: Path) -> None:
    assert stub_ca.store is not None
    session = _session(tmp_path)
    names = [HOST, "autoconfig.example.com"]
    issued = session.issue(names, stub_ca.store)
    assert stub_ca.csr_names == [names]
    # Each token was served with its key authorization while the CA validated...
    assert len(stub_ca.served) == 2
    assert stub_ca.served == stub_ca.expected
    # ...and is gone afterwards.
    assert all(stub_ca.store.get(token) is None for token in stub_ca.served)
    # The key returned is the key of the CSR and of the certificate.
    key = serialization.load_pem_private_key(issued.key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert stub_ca.csr_keys == [_spki(key.public_key())]
    leaf = x509.load_pem_x509_certificates(issued.fullchain_pem)[0]
    assert _spki(leaf.public_key()) == _spki(key.public_key())
    assert files.describe(issued.fullchain_pem).names == names


def test_issue_uses_the_configured_key_type(stub_ca: StubCA, tmp_path: Path) -> None:
    assert stub_ca.store is not None
    issued = _session(tmp_path, key_type="rsa-2048").issue([HOST], stub_ca.store)
    key = serialization.load_pem_private_key(issued.key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048


def test_failed_validation_names_the_name_and_the_ca_reason(
    stub_ca: StubCA, tmp_path: Path
) -> None:
    assert stub_ca.store is not None
    stub_ca.invalid_challenge = HOST
    with pytest.raises(AcmeFailure) as info:
        _session(tmp_path).issue([HOST], stub_ca.store)
    assert info.value.message == f"the CA could not validate {HOST}: Connection refused"
    assert stub_ca.served  # it was answered...
    assert all(stub_ca.store.get(token) is None for token in stub_ca.served)  # ...and removed


def test_ca_without_http01_is_an_acme_failure(stub_ca: StubCA, tmp_path: Path) -> None:
    assert stub_ca.store is not None
    stub_ca.offer_http01 = False
    with pytest.raises(AcmeFailure, match=f"offers no HTTP-01 challenge for {HOST}"):
        _session(tmp_path).issue([HOST], stub_ca.store)


def test_malformed_token_from_the_ca_stops_and_cleans_up(stub_ca: StubCA, tmp_path: Path) -> None:
    assert stub_ca.store is not None
    stub_ca.token_bytes = {"second.example.com": 8}  # 11 characters: too short
    with pytest.raises(AcmeFailure, match="malformed challenge token"):
        _session(tmp_path).issue([HOST, "second.example.com"], stub_ca.store)
    # The first name's token had been put and answered; it is removed as well.
    assert len(stub_ca.served) == 1
    assert not any(stub_ca.store.directory.iterdir())


def test_refused_order_and_timeout_are_acme_failures(stub_ca: StubCA, tmp_path: Path) -> None:
    assert stub_ca.store is not None
    session = _session(tmp_path)
    stub_ca.refuse_order = True
    with pytest.raises(AcmeFailure, match=f"refused the order for {HOST}, b.example.com"):
        session.issue([HOST, "b.example.com"], stub_ca.store)
    stub_ca.refuse_order = False
    stub_ca.finalize_error = errors.TimeoutError()
    with pytest.raises(AcmeFailure, match="did not finish within 7s"):
        session.issue([HOST], stub_ca.store, timeout=7)
    assert not any(stub_ca.store.directory.iterdir())


@pytest.mark.parametrize(
    "where",
    ["finalize", "network"],
)
def test_every_ca_or_network_failure_of_an_order_is_an_acme_failure(
    stub_ca: StubCA, tmp_path: Path, where: str
) -> None:
    assert stub_ca.store is not None
    if where == "finalize":
        stub_ca.finalize_error = errors.IssuanceError(
            messages.Error.with_code("badCSR", detail="key too weak")
        )
    else:
        stub_ca.order_error = requests.exceptions.ConnectionError("connection reset")
    with pytest.raises(AcmeFailure):
        _session(tmp_path).issue([HOST], stub_ca.store)


def test_renewal_information_only_when_the_directory_offers_it(
    stub_ca: StubCA, tmp_path: Path
) -> None:
    suggestion = T0 + timedelta(days=50)
    stub_ca.suggestion = suggestion
    without = _session(tmp_path)
    assert without.offers_renewal_info is False
    assert without.suggested_renewal(b"pem") is None
    assert stub_ca.renewal_asked == []  # not asked at all
    stub_ca.directory = {**stub_ca.directory, "renewalInfo": "https://ca.test/ari"}
    offered = _session(tmp_path)
    assert offered.offers_renewal_info is True
    assert offered.suggested_renewal(b"pem") == suggestion
    assert stub_ca.renewal_asked == [b"pem"]
    # A CA that has nothing for this certificate is not an error.
    stub_ca.renewal_error = errors.ARIError("no renewal info", datetime.now())
    assert offered.suggested_renewal(b"pem") is None


# --- certificate files ---------------------------------------------------------------------
def test_describe_reads_the_leaf_of_a_chain() -> None:
    pair = make_cert([HOST, "autoconfig.example.com"])
    info = files.describe(pair.chain_pem)
    assert info.names == [HOST, "autoconfig.example.com"]
    assert info.serial == pair.serial
    assert info.serial == info.serial.upper()
    assert info.issuer == "CN=Throwaway Test CA"
    assert info.self_signed is False
    assert info.not_before == T0 - timedelta(hours=1)
    assert info.lifetime == DAYS_90
    own = files.describe(make_cert([HOST], self_signed=True).chain_pem)
    assert own.self_signed is True
    assert files.describe(make_cert([]).chain_pem).names == []


def test_installed_is_none_without_a_readable_certificate(tmp_path: Path) -> None:
    assert files.installed(tmp_path / "certs") is None
    (tmp_path / "certs").mkdir()
    files.paths(tmp_path / "certs").chain.write_text("not a certificate\n")
    assert files.installed(tmp_path / "certs") is None
    pair = make_cert([HOST])
    files.install(tmp_path / "certs", pair.key_pem, pair.chain_pem)
    info = files.installed(tmp_path / "certs")
    assert info is not None
    assert info.serial == pair.serial


def test_install_writes_key_0600_and_chain_0644_without_leftovers(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    pair = make_cert([HOST])
    files.install(certs, pair.key_pem, pair.chain_pem)
    target = files.paths(certs)
    assert target.key.read_bytes() == pair.key_pem
    assert target.chain.read_bytes() == pair.chain_pem
    assert stat.S_IMODE(target.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.chain.stat().st_mode) == 0o644
    assert sorted(p.name for p in certs.iterdir()) == ["fullchain.pem", "privkey.pem"]


def test_snapshot_and_restore_put_the_old_pair_back(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    old, new = make_cert([HOST]), make_cert([HOST])
    files.install(certs, old.key_pem, old.chain_pem)
    saved = files.snapshot(certs)
    files.install(certs, new.key_pem, new.chain_pem)
    files.restore(certs, saved)
    assert files.paths(certs).key.read_bytes() == old.key_pem
    assert files.paths(certs).chain.read_bytes() == old.chain_pem
    assert stat.S_IMODE(files.paths(certs).key.stat().st_mode) == 0o600


def test_restoring_an_empty_snapshot_writes_nothing(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    saved = files.snapshot(certs)
    assert saved == files.CertificateSnapshot(key=None, chain=None)
    pair = make_cert([HOST])
    files.install(certs, pair.key_pem, pair.chain_pem)
    files.restore(certs, saved)
    assert files.paths(certs).chain.read_bytes() == pair.chain_pem


@pytest.mark.parametrize(
    ("names", "covered"),
    [
        ([HOST], True),
        (["other.example.com", HOST], True),
        (["*.example.com"], True),
        (["*.mail.example.com"], False),  # a wildcard never covers its own parent
        (["*.com"], False),  # nor two labels
        (["example.com"], False),
        (["other.example.com"], False),
        ([], False),
    ],
)
def test_custom_certificate_must_cover_the_hostname(names: list[str], covered: bool) -> None:
    pair = make_cert(names)
    if covered:
        info = files.check_custom(pair.chain_pem, pair.key_pem, HOST, T0)
        assert info.serial == pair.serial
    else:
        with pytest.raises(InvalidInput, match=f"does not cover the hostname {HOST}"):
            files.check_custom(pair.chain_pem, pair.key_pem, HOST, T0)


def test_custom_certificate_must_be_valid_now() -> None:
    pair = make_cert([HOST], not_before=T0 - DAYS_90, lifetime=DAYS_90)  # ends at T0
    with pytest.raises(InvalidInput, match="expired"):
        files.check_custom(pair.chain_pem, pair.key_pem, HOST, T0)
    files.check_custom(pair.chain_pem, pair.key_pem, HOST, T0 - timedelta(seconds=1))
    future = make_cert([HOST], not_before=T0 + timedelta(minutes=1))
    with pytest.raises(InvalidInput, match="not valid before"):
        files.check_custom(future.chain_pem, future.key_pem, HOST, T0)
    files.check_custom(future.chain_pem, future.key_pem, HOST, T0 + timedelta(minutes=1))


def test_custom_certificate_must_come_with_its_own_key() -> None:
    pair, other = make_cert([HOST]), make_cert([HOST])
    with pytest.raises(InvalidInput, match="does not belong to the certificate") as info:
        files.check_custom(pair.chain_pem, other.key_pem, HOST, T0)
    assert info.value.field == "private_key"
    # The CA's key matches the second certificate of the chain, not the leaf.
    with pytest.raises(InvalidInput, match="does not belong"):
        files.check_custom(pair.chain_pem, _key_pem(CA_KEY), HOST, T0)


@pytest.mark.parametrize(
    ("chain", "key", "message"),
    [
        (b"", None, "certificate_chain is not a PEM certificate chain"),
        (b"garbage", None, "certificate_chain is not a PEM certificate chain"),
        (None, b"", "private_key is not an unencrypted PEM private key"),
        (None, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "private_key"),
        (None, "encrypted", "private_key is not an unencrypted PEM private key"),
    ],
)
def test_custom_certificate_refuses_garbage(
    chain: bytes | None, key: bytes | str | None, message: str
) -> None:
    pair = make_cert([HOST])
    if key == "encrypted":
        loaded = serialization.load_pem_private_key(pair.key_pem, None)
        key = loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    assert not isinstance(key, str)
    with pytest.raises(InvalidInput, match=message) as info:
        files.check_custom(
            pair.chain_pem if chain is None else chain,
            pair.key_pem if key is None else key,
            HOST,
            T0,
        )
    assert "BEGIN" not in info.value.message


# --- CertificateManager: when a renewal is due --------------------------------------------
@dataclass
class FakeCA:
    """Stands in for AcmeSession in the manager: issues from the throwaway CA, at the
    manager's clock, and records every session and order."""

    clock: Clock
    failure: str | None = None
    suggestion: datetime | None = None
    lifetime: timedelta = DAYS_90
    configs: list[AcmeAccountConfig] = field(default_factory=list)
    account_key_files: list[Path] = field(default_factory=list)
    orders: list[list[str]] = field(default_factory=list)
    stores: list[ChallengeStore] = field(default_factory=list)
    issued: list[Pair] = field(default_factory=list)

    def session(self, config: AcmeAccountConfig, account_key_file: Path) -> Any:
        self.configs.append(config)
        self.account_key_files.append(account_key_file)
        ca = self

        class Session:
            def issue(self, names: list[str], store: ChallengeStore) -> IssuedCertificate:
                ca.orders.append(list(names))
                ca.stores.append(store)
                if ca.failure is not None:
                    raise AcmeFailure(ca.failure)
                pair = make_cert(names, not_before=ca.clock(), lifetime=ca.lifetime)
                ca.issued.append(pair)
                return IssuedCertificate(key_pem=pair.key_pem, fullchain_pem=pair.chain_pem)

            def suggested_renewal(self, cert_pem: bytes) -> datetime | None:
                assert cert_pem == ca.issued[-1].chain_pem
                return ca.suggestion

        return Session()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def fake_ca(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> FakeCA:
    ca = FakeCA(clock)
    monkeypatch.setattr(engine_module, "AcmeSession", ca.session)
    return ca


@pytest.fixture
def manager(settings: Settings, config_engine: ConfigEngine, clock: Clock) -> CertificateManager:
    """Docker-less: reload_everywhere has no replica to reload, verify has none to read."""
    files.ensure_certificate(settings.certs_dir, settings.hostname)  # as the first start
    return CertificateManager(settings, config_engine, None, clock=clock)


def _install(settings: Settings, pair: Pair) -> None:
    files.install(settings.certs_dir, pair.key_pem, pair.chain_pem)


def _write_state(settings: Settings, **state: Any) -> None:
    (settings.state_dir / "certificate-state.json").parent.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "certificate-state.json").write_text(json.dumps(state))


def test_with_acme_off_nothing_is_ever_due(manager: CertificateManager, settings: Settings) -> None:
    status = manager.status()
    assert status["acme_enabled"] is False
    assert status["source"] == "self-signed"
    assert status["names"] == [HOST]
    assert status["next_renewal_at"] is None
    assert manager.due() is False
    _install(settings, make_cert(["other.example.com"], lifetime=timedelta(hours=2)))
    assert manager.due() is False


def test_self_signed_or_missing_certificate_is_due_at_once(
    manager: CertificateManager, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    _store_settings(sessions, acme_enabled=True)
    status = manager.status()
    assert status["acme_enabled"] is True
    assert status["wanted_names"] == [HOST]
    assert _at(status["next_renewal_at"]) == T0
    assert manager.due() is True
    files.paths(settings.certs_dir).key.unlink()
    files.paths(settings.certs_dir).chain.unlink()
    status = manager.status()
    assert status["serial"] is None
    assert status["source"] is None
    assert _at(status["next_renewal_at"]) == T0
    assert manager.due() is True


def test_ca_certificate_renews_when_a_third_of_its_lifetime_remains(
    manager: CertificateManager, settings: Settings, sessions: sessionmaker[Session], clock: Clock
) -> None:
    _store_settings(sessions, acme_enabled=True)
    pair = make_cert([HOST], not_before=T0, lifetime=DAYS_90)
    _install(settings, pair)
    assert _at(manager.status()["next_renewal_at"]) == T0 + timedelta(days=60)
    clock.now = T0 + timedelta(days=60) - timedelta(seconds=1)
    assert manager.due() is False
    clock.advance(timedelta(seconds=1))
    assert manager.due() is True
    # A 6-day certificate renews after 4 days.
    _install(settings, make_cert([HOST], not_before=T0, lifetime=timedelta(days=6)))
    assert _at(manager.status()["next_renewal_at"]) == T0 + timedelta(days=4)


def test_a_missing_or_unwanted_name_makes_it_due(
    manager: CertificateManager, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    _store_settings(
        sessions,
        acme_enabled=True,
        certificate_extra_names=["webmail.example.com", "autoconfig.example.com", HOST],
    )
    wanted = [HOST, "autoconfig.example.com", "webmail.example.com"]
    assert manager.status()["wanted_names"] == wanted
    # The same names in another order: not due.
    _install(settings, make_cert(["webmail.example.com", HOST, "autoconfig.example.com"]))
    assert manager.due() is False
    _install(settings, make_cert([HOST, "autoconfig.example.com"]))  # one missing
    assert manager.due() is True
    _install(settings, make_cert([*wanted, "old.example.com"]))  # one too many
    assert manager.due() is True


def test_renewal_information_is_used_for_the_serial_it_was_given_for(
    manager: CertificateManager, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    _store_settings(sessions, acme_enabled=True)
    pair = make_cert([HOST], not_before=T0, lifetime=DAYS_90)
    _install(settings, pair)
    suggested = T0 + timedelta(days=20, hours=3)
    _write_state(
        settings, source="acme", serial=pair.serial, ari_suggested_at=suggested.isoformat()
    )
    assert _at(manager.status()["next_renewal_at"]) == suggested
    # A suggestion for another certificate does not apply to this one.
    _write_state(settings, source="acme", serial="ABC", ari_suggested_at=suggested.isoformat())
    assert _at(manager.status()["next_renewal_at"]) == T0 + timedelta(days=60)


def test_custom_certificate_is_never_due(
    manager: CertificateManager, settings: Settings, sessions: sessionmaker[Session], clock: Clock
) -> None:
    _store_settings(sessions, acme_enabled=True, certificate_extra_names=["x.example.com"])
    pair = make_cert([HOST], not_before=T0, lifetime=timedelta(days=2))
    _install(settings, pair)
    _write_state(settings, source="custom", serial=pair.serial)
    clock.advance(timedelta(days=30))  # even expired and missing a wanted name
    status = manager.status()
    assert status["source"] == "custom"
    assert status["next_renewal_at"] is None
    assert manager.due() is False


def test_state_file_that_cannot_be_read_counts_as_empty(
    manager: CertificateManager, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    _store_settings(sessions, acme_enabled=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "certificate-state.json").write_text("{half")
    status = manager.status()
    assert status["consecutive_failures"] == 0
    assert status["source"] == "self-signed"
    assert manager.due() is True


# --- CertificateManager: renewing -------------------------------------------------------------
def _applies(sessions: sessionmaker[Session], trigger: str = "certificate") -> list[ConfigApply]:
    with sessions() as session:
        query = select(ConfigApply).where(ConfigApply.trigger == trigger).order_by(ConfigApply.id)
        return list(session.scalars(query))


def test_renew_refuses_while_acme_is_off(
    manager: CertificateManager, fake_ca: FakeCA, settings: Settings
) -> None:
    before = files.snapshot(settings.certs_dir)
    for force in (False, True):
        with pytest.raises(Unavailable, match="acme_enabled"):
            manager.renew(actor="admin", force=force)
    assert fake_ca.configs == []
    assert files.snapshot(settings.certs_dir) == before
    assert not (settings.state_dir / "certificate-state.json").exists()


def test_renew_does_nothing_before_it_is_due_unless_forced(
    manager: CertificateManager,
    fake_ca: FakeCA,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    _store_settings(sessions, acme_enabled=True)
    current = make_cert([HOST], not_before=T0)
    _install(settings, current)
    status = manager.renew(actor="renewal scheduler")
    assert fake_ca.orders == []
    assert status["serial"] == current.serial
    status = manager.renew(actor="admin", force=True)
    assert fake_ca.orders == [[HOST]]
    assert status["serial"] == fake_ca.issued[0].serial != current.serial


def test_successful_renewal_deploys_and_records(
    manager: CertificateManager,
    fake_ca: FakeCA,
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    _store_settings(
        sessions, acme_enabled=True, certificate_extra_names=["b.example.com", "a.example.com"]
    )
    old = files.installed(settings.certs_dir)
    assert old is not None
    seen_by_hook: list[str | None] = []
    manager.on_deployed.append(
        lambda: seen_by_hook.append(getattr(files.installed(settings.certs_dir), "serial", None))
    )
    status = manager.renew(actor="renewal scheduler")
    assert fake_ca.orders == [[HOST, "a.example.com", "b.example.com"]]
    assert fake_ca.stores[0].directory == manager.challenges.directory
    assert fake_ca.stores[0].directory == settings.state_dir / "acme-challenges"
    assert fake_ca.account_key_files == [settings.state_dir / "secrets/acme-account-key.pem"]
    new = fake_ca.issued[0]
    assert files.paths(settings.certs_dir).key.read_bytes() == new.key_pem
    assert files.paths(settings.certs_dir).chain.read_bytes() == new.chain_pem
    assert seen_by_hook == [new.serial]  # after the files were in place
    assert status["source"] == "acme"
    assert status["serial"] == new.serial
    assert status["names"] == [HOST, "a.example.com", "b.example.com"]
    assert status["issuer"] == "CN=Throwaway Test CA"
    assert _at(status["last_attempt_at"]) == T0
    assert _at(status["last_success_at"]) == T0
    assert status["last_error"] is None
    assert status["consecutive_failures"] == 0
    assert _at(status["next_renewal_at"]) == T0 + timedelta(days=60)
    assert manager.due() is False
    # The deploy is an apply of its own, recorded with the serials.
    [record] = _applies(sessions)
    assert record.status == "succeeded"
    assert record.actor == "renewal scheduler"
    assert json.loads(record.changes) == [
        {"name": "certificate", "old": old.serial, "new": new.serial}
    ]
    state = (settings.state_dir / "certificate-state.json").read_text()
    assert "PRIVATE KEY" not in state


def test_renewal_information_from_the_ca_sets_the_next_renewal(
    manager: CertificateManager,
    fake_ca: FakeCA,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    _store_settings(sessions, acme_enabled=True)
    fake_ca.suggestion = T0 + timedelta(days=45, minutes=7)
    manager.renew(actor="admin")
    assert _at(manager.status()["next_renewal_at"]) == fake_ca.suggestion
    clock.now = fake_ca.suggestion
    assert manager.due() is True
    # The next certificate comes without a suggestion: the stored one is dropped.
    fake_ca.suggestion = None
    status = manager.renew(actor="admin")
    assert _at(status["next_renewal_at"]) == clock.now + timedelta(days=60)


def test_failures_back_off_1_min_10_min_100_min_then_daily(
    manager: CertificateManager,
    fake_ca: FakeCA,
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    _store_settings(sessions, acme_enabled=True)
    fake_ca.failure = f"the CA could not validate {HOST}: DNS problem: NXDOMAIN"
    before = files.snapshot(settings.certs_dir)
    waits = [
        timedelta(minutes=1),
        timedelta(minutes=10),
        timedelta(minutes=100),
        timedelta(days=1),
        timedelta(days=1),
    ]
    for attempt, wait in enumerate(waits, start=1):
        assert manager.due() is True
        with pytest.raises(Unavailable, match=r"no new certificate: .*NXDOMAIN"):
            manager.renew(actor="renewal scheduler")
        assert len(fake_ca.orders) == attempt
        status = manager.status()
        assert status["consecutive_failures"] == attempt
        assert status["last_error"] == fake_ca.failure
        assert _at(status["last_attempt_at"]) == clock.now
        assert _at(status["next_renewal_at"]) == clock.now + wait
        assert status["last_success_at"] is None
        assert files.snapshot(settings.certs_dir) == before  # the old one stays
        # Until the wait is over, the scheduler does not ask the CA again.
        clock.advance(wait - timedelta(seconds=1))
        assert manager.due() is False
        manager.renew(actor="renewal scheduler")
        assert len(fake_ca.orders) == attempt
        clock.advance(timedelta(seconds=1))
    assert _applies(sessions) == []
    fake_ca.failure = None
    status = manager.renew(actor="renewal scheduler")
    assert status["source"] == "acme"
    assert status["consecutive_failures"] == 0
    assert status["last_error"] is None
    assert _at(status["next_renewal_at"]) == clock.now + timedelta(days=60)


def test_a_forced_renewal_ignores_the_back_off(
    manager: CertificateManager, fake_ca: FakeCA, sessions: sessionmaker[Session]
) -> None:
    _store_settings(sessions, acme_enabled=True)
    fake_ca.failure = "the CA refused the order"
    with pytest.raises(Unavailable):
        manager.renew(actor="admin")
    assert manager.due() is False
    fake_ca.failure = None
    assert manager.renew(actor="admin", force=True)["source"] == "acme"
    assert len(fake_ca.orders) == 2


def test_account_settings_reach_the_session(
    manager: CertificateManager,
    fake_ca: FakeCA,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    manager.settings.state_dir.mkdir(parents=True, exist_ok=True)  # as after the first start
    system = tmp_path / "system-cas.pem"
    system.write_bytes(_pem(make_cert(["system.example"], self_signed=True).certificate))
    monkeypatch.setattr(engine_module, "SYSTEM_CAS", system)
    bundle = _pem(CA_CERT).decode()
    _store_settings(
        sessions,
        acme_enabled=True,
        acme_directory_url="https://pebble.test:14000/dir",
        acme_contact_email="hostmaster@example.org",
        acme_key_type="rsa-3072",
        acme_ca_bundle=bundle,
    )
    manager.renew(actor="admin")
    [config] = fake_ca.configs
    assert config.directory_url == "https://pebble.test:14000/dir"
    assert config.contact_email == "hostmaster@example.org"
    assert config.key_type == "rsa-3072"
    assert config.trust_file is not None
    trusted = x509.load_pem_x509_certificates(config.trust_file.read_bytes())
    # The system CAs stay trusted, the bundle is added.
    assert [c.subject.rfc4514_string() for c in trusted] == [
        "CN=system.example",
        "CN=Throwaway Test CA",
    ]


def test_without_a_ca_bundle_the_system_cas_are_used(
    manager: CertificateManager, fake_ca: FakeCA, sessions: sessionmaker[Session]
) -> None:
    _store_settings(sessions, acme_enabled=True)
    manager.renew(actor="admin")
    assert fake_ca.configs[0].trust_file is None
    assert fake_ca.configs[0].directory_url == "https://acme-v02.api.letsencrypt.org/directory"
    assert fake_ca.configs[0].key_type == "ecdsa-p256"


def test_install_custom_deploys_and_is_kept_by_the_scheduler(
    manager: CertificateManager,
    fake_ca: FakeCA,
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    _store_settings(sessions, acme_enabled=True)
    fake_ca.failure = "the CA is down"
    with pytest.raises(Unavailable):
        manager.renew(actor="admin")
    # Valid from T0 + 1 h: only a manager that uses its clock accepts it at T0 + 2 h.
    pair = make_cert(["*.example.com"], not_before=T0 + timedelta(hours=1), lifetime=DAYS_90)
    clock.now = T0 + timedelta(hours=2)
    hooks: list[str] = []
    manager.on_deployed.append(lambda: hooks.append("deployed"))
    status = manager.install_custom(pair.chain_pem, pair.key_pem, actor="admin")
    assert hooks == ["deployed"]
    assert files.paths(settings.certs_dir).chain.read_bytes() == pair.chain_pem
    assert status["source"] == "custom"
    assert status["serial"] == pair.serial
    assert status["last_error"] is None
    assert status["consecutive_failures"] == 0
    assert status["next_renewal_at"] is None
    clock.advance(timedelta(days=89))
    assert manager.due() is False
    assert manager.renew(actor="renewal scheduler")["source"] == "custom"
    assert len(fake_ca.orders) == 1
    assert [r.status for r in _applies(sessions)] == ["succeeded"]
    # A forced renewal goes back to ACME.
    fake_ca.failure = None
    status = manager.renew(actor="admin", force=True)
    assert status["source"] == "acme"
    assert status["serial"] == fake_ca.issued[0].serial


def test_install_custom_refuses_before_touching_anything(
    manager: CertificateManager, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    before = files.snapshot(settings.certs_dir)
    pair, other = make_cert([HOST]), make_cert([HOST])
    with pytest.raises(InvalidInput, match="does not belong"):
        manager.install_custom(pair.chain_pem, other.key_pem, actor="admin")
    wrong_host = make_cert(["other.example.com"])
    with pytest.raises(InvalidInput, match="does not cover"):
        manager.install_custom(wrong_host.chain_pem, wrong_host.key_pem, actor="admin")
    assert files.snapshot(settings.certs_dir) == before
    assert _applies(sessions) == []
    assert not (settings.state_dir / "certificate-state.json").exists()


def test_custom_certificate_follows_the_configured_hostname(
    manager: CertificateManager, sessions: sessionmaker[Session]
) -> None:
    _store_settings(sessions, hostname="mx.example.org")
    pair = make_cert([HOST])
    with pytest.raises(InvalidInput, match=r"mx\.example\.org"):
        manager.install_custom(pair.chain_pem, pair.key_pem, actor="admin")
    ok = make_cert(["mx.example.org"])
    assert manager.install_custom(ok.chain_pem, ok.key_pem, actor="admin")["serial"] == ok.serial


def test_without_a_runtime_nothing_is_read_on_the_wire(manager: CertificateManager) -> None:
    assert manager.runtime is None
    assert manager.verify_on_the_wire("ABCDEF") == []


# --- CertificateManager with replicas (fake runtime) -----------------------------------------
class WiredRuntime(FakeRuntime):
    """The fake runtime with addresses, whose daemons serve the certificate that was on
    disk at their last (re)load, unless listed in `stale`."""

    def __init__(self, config_dir: Path, certs_dir: Path) -> None:
        super().__init__(config_dir, {"postfix": 2, "dovecot": 2})
        self.certs_dir = certs_dir
        self.serving: dict[str, str] = {}
        self.stale: set[str] = set()  # replicas whose reload ignores the new files
        self.unreachable: set[str] = set()
        self.without_address: set[str] = set()
        self.probes: list[tuple[str, int, str]] = []
        self.before_exec = self._note_reload

    def _note_reload(self, container: FakeContainer, argv: tuple[str, ...]) -> None:
        if argv == SERVICES[container.service].reload and container.name not in self.stale:
            info = files.installed(self.certs_dir)
            assert info is not None
            self.serving[container.name] = info.serial

    def _address(self, container: FakeContainer) -> str:
        network = {"postfix": 1, "dovecot": 2}.get(container.service, 3)
        return f"10.0.{network}.{container.number}"

    def addresses(self, replica: Replica) -> list[str]:
        if replica.name in self.without_address:
            return []
        return [self._address(self.containers[replica.name])]

    def served_serial(self, host: str, port: int, mode: str, timeout: float = 30.0) -> str:
        [name] = [n for n, c in self.containers.items() if self._address(c) == host]
        self.probes.append((name, port, mode))
        if name in self.unreachable:
            raise OSError("Connection refused")
        return self.serving[name]


_POSTFIX_PORTS = [(25, "smtp-starttls"), (465, "implicit"), (587, "smtp-starttls")]


@dataclass
class Wired:
    runtime: WiredRuntime
    manager: CertificateManager
    old: Pair


@pytest.fixture
def wired(
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> Wired:
    old = make_cert([HOST], not_before=T0 - timedelta(days=80))  # due: 10 days left
    _install(settings, old)
    runtime = WiredRuntime(settings.config_dir, settings.certs_dir)
    engine = ConfigEngine(settings, sessions, runtime, gate_timeout=0.05, settle=0)
    first = engine.reconcile(trigger="startup")
    assert first is not None
    assert first["status"] == "succeeded"
    assert runtime.serving == dict.fromkeys((P1, P2, D1, D2), old.serial)
    runtime.calls.clear()
    monkeypatch.setattr(engine_module, "served_serial", runtime.served_serial)
    _store_settings(sessions, acme_enabled=True)
    return Wired(runtime, CertificateManager(settings, engine, runtime, clock=clock), old)


def test_deploy_reloads_every_replica_then_reads_every_tls_port(
    wired: Wired, fake_ca: FakeCA, sessions: sessionmaker[Session]
) -> None:
    status = wired.manager.renew(actor="renewal scheduler")
    new = fake_ca.issued[0].serial
    assert status["serial"] == new
    assert status["last_error"] is None
    for name in (P1, P2, D1, D2):
        verbs = [verb for who, verb in wired.runtime.ops() if who == name]
        assert verbs.count("reload") == 1, (name, verbs)
        assert verbs.index("reload") < verbs.index("gate")
    assert wired.runtime.serving == dict.fromkeys((P1, P2, D1, D2), new)
    assert sorted(wired.runtime.probes) == sorted(
        [(p, port, mode) for p in (P1, P2) for port, mode in _POSTFIX_PORTS]
        + [(d, port, "implicit") for d in (D1, D2) for port in (993, 995)]
    )
    [record] = _applies(sessions)
    assert record.status == "succeeded"


def test_a_failed_health_gate_puts_the_old_certificate_back(
    wired: Wired, fake_ca: FakeCA, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    old = wired.old
    wired.runtime.health = lambda c: (
        "no TLS on 465"
        if c.service == "postfix"
        and getattr(files.installed(settings.certs_dir), "serial", None) != old.serial
        else None
    )
    hooks: list[str] = []
    wired.manager.on_deployed.append(lambda: hooks.append("deployed"))
    with pytest.raises(Unavailable, match=r"no new certificate: rolled back: .*no TLS on 465"):
        wired.manager.renew(actor="renewal scheduler")
    assert files.paths(settings.certs_dir).key.read_bytes() == old.key_pem
    assert files.paths(settings.certs_dir).chain.read_bytes() == old.chain_pem
    assert hooks == []
    # Every replica serves the old certificate again.
    assert wired.runtime.serving == dict.fromkeys((P1, P2, D1, D2), old.serial)
    assert [r.status for r in _applies(sessions)] == ["rolled_back"]
    status = wired.manager.status()
    assert status["serial"] == old.serial
    assert status["consecutive_failures"] == 1
    assert "no TLS on 465" in status["last_error"]


def test_a_port_that_still_serves_the_old_serial_is_reported(wired: Wired, fake_ca: FakeCA) -> None:
    wired.runtime.stale = {P2}
    with pytest.raises(Unavailable, match="not served everywhere") as info:
        wired.manager.renew(actor="renewal scheduler")
    new = fake_ca.issued[0].serial
    message = info.value.message
    for port in (25, 465, 587):
        assert f"{P2} port {port} serves {wired.old.serial}, not {new}" in message
    assert P1 not in message
    assert D1 not in message
    status = wired.manager.status()
    assert status["consecutive_failures"] == 1
    assert "not served everywhere" in status["last_error"]


def test_stopped_replicas_are_neither_reloaded_nor_read(wired: Wired, fake_ca: FakeCA) -> None:
    wired.runtime.container("dovecot", 2).running = False
    status = wired.manager.renew(actor="renewal scheduler")
    assert status["last_error"] is None
    assert [verb for who, verb in wired.runtime.ops() if who == D2] == []
    assert all(name != D2 for name, _port, _mode in wired.runtime.probes)
    assert {name for name, _port, _mode in wired.runtime.probes} == {P1, P2, D1}


def test_verify_reports_replicas_without_address_or_answer(wired: Wired) -> None:
    wired.runtime.without_address = {D1}
    wired.runtime.unreachable = {P1}
    problems = wired.manager.verify_on_the_wire(wired.old.serial)
    assert set(problems) == {
        f"{P1} port 25: Connection refused",
        f"{P1} port 465: Connection refused",
        f"{P1} port 587: Connection refused",
        f"{D1}: no address to check",
    }
    assert wired.manager.verify_on_the_wire(wired.old.serial + "0") != []


# --- port 80 ---------------------------------------------------------------------------------
@pytest.fixture
def port80(tmp_path: Path) -> tuple[StarletteTestClient, ChallengeStore, list[str]]:
    store = ChallengeStore(tmp_path / "state" / "acme-challenges")
    hostname = [HOST]
    app = responder_app(store, lambda: hostname[0])
    return StarletteTestClient(app, follow_redirects=False), store, hostname


def test_port_80_serves_challenge_tokens_from_the_store(
    port80: tuple[StarletteTestClient, ChallengeStore, list[str]],
) -> None:
    client, store, _ = port80
    store.put(TOKEN, f"{TOKEN}.account-thumbprint")
    response = client.get(f"/.well-known/acme-challenge/{TOKEN}", headers={"host": HOST})
    assert response.status_code == 200
    assert response.text == f"{TOKEN}.account-thumbprint"
    assert response.headers["content-type"].startswith("text/plain")
    assert client.head(f"/.well-known/acme-challenge/{TOKEN}").status_code == 200
    store.remove(TOKEN)
    assert client.get(f"/.well-known/acme-challenge/{TOKEN}").status_code == 404


@pytest.mark.parametrize(
    "token", ["unknown-token-0123456789", "short", "..%2Fsecret", "%2e%2e", "a" * 129]
)
def test_port_80_answers_404_or_redirect_for_unknown_and_malformed_tokens(
    port80: tuple[StarletteTestClient, ChallengeStore, list[str]], token: str, tmp_path: Path
) -> None:
    client, store, _ = port80
    store.put(TOKEN, "the-real-one")
    (tmp_path / "state" / "secret").write_text("never served")
    response = client.get(f"/.well-known/acme-challenge/{token}")
    assert response.status_code in (301, 404)
    assert "never served" not in response.text
    assert "the-real-one" not in response.text
    if "%2" not in token:
        assert response.status_code == 404


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE"])
def test_port_80_redirects_everything_else_to_the_configured_hostname(
    port80: tuple[StarletteTestClient, ChallengeStore, list[str]], method: str
) -> None:
    client, _, _ = port80
    response = client.request(method, "/login?next=x", headers={"host": "evil.example"})
    assert response.status_code == 301
    assert response.headers["location"] == f"https://{HOST}/login"


def test_port_80_redirect_cannot_be_steered_elsewhere(
    port80: tuple[StarletteTestClient, ChallengeStore, list[str]],
) -> None:
    client, _, hostname = port80
    for path in ("http://testserver//evil.example/x", "/", "/@evil.example", "/a%20b"):
        response = client.get(path, headers={"host": "evil.example"})
        assert response.status_code == 301, path
        location = response.headers["location"]
        assert location.startswith(f"https://{HOST}/"), location
        assert " " not in location
    # A path with a line break matches no route (404); no header is injected either way.
    response = client.get("/%0d%0aSet-Cookie:%20a=b", headers={"host": "evil.example"})
    assert response.status_code in (301, 404)
    assert "set-cookie" not in response.headers
    assert all("\n" not in value and "\r" not in value for value in response.headers.values())
    # The hostname is read per request: a settings change applies at once.
    hostname[0] = "mx.example.org"
    assert client.get("/a").headers["location"] == "https://mx.example.org/a"


# --- /api/v1/certificates ----------------------------------------------------------------------
@pytest.fixture
def api_ca(monkeypatch: pytest.MonkeyPatch) -> FakeCA:
    ca = FakeCA(Clock(datetime.now(UTC) - timedelta(minutes=1)))
    monkeypatch.setattr(engine_module, "AcmeSession", ca.session)
    return ca


@pytest.fixture
def other_tokens(make: Any, admin: TestClient, client_for: Callable[[str], TestClient]) -> Any:
    make.domain("a.example")
    created = {}
    for key, body in {
        "scoped": {"name": "scoped", "domains": ["a.example"]},
        "read_only": {"name": "read-only", "admin": True, "read_only": True},
    }.items():
        response = admin.post(f"{API}/tokens", json=body)
        assert response.status_code == 201, response.text
        created[key] = client_for(response.json()["token"])
    return SimpleNamespace(**created)


def _now_cert(names: list[str], **kwargs: Any) -> Pair:
    return make_cert(names, not_before=datetime.now(UTC) - timedelta(hours=1), **kwargs)


def test_api_status_for_admins_only(
    admin: TestClient,
    client: TestClient,
    other_tokens: Any,
    settings: Settings,
    problem: Callable[..., dict[str, Any]],
) -> None:
    files.ensure_certificate(settings.certs_dir, HOST)
    response = admin.get(f"{API}/certificates")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "self-signed"
    assert body["names"] == [HOST]
    assert body["acme_enabled"] is False
    assert body["next_renewal_at"] is None
    assert (
        body["serial"] == files.describe(files.paths(settings.certs_dir).chain.read_bytes()).serial
    )
    assert "PRIVATE KEY" not in response.text
    # A read-only admin may look.
    assert other_tokens.read_only.get(f"{API}/certificates").status_code == 200
    problem(other_tokens.scoped.get(f"{API}/certificates"), 403, detail_contains="admin")
    problem(client.get(f"{API}/certificates"), 401)


def test_api_renew_is_refused_while_acme_is_off(
    admin: TestClient, api_ca: FakeCA, problem: Callable[..., dict[str, Any]]
) -> None:
    problem(admin.post(f"{API}/certificates/renew"), 503, detail_contains="acme_enabled")
    assert api_ca.configs == []


def test_api_renew_forces_a_new_certificate(
    admin: TestClient,
    api_ca: FakeCA,
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    other_tokens: Any,
    problem: Callable[..., dict[str, Any]],
) -> None:
    _store_settings(sessions, acme_enabled=True)
    _install(settings, _now_cert([HOST]))  # valid and not due: the API forces anyway
    problem(other_tokens.read_only.post(f"{API}/certificates/renew"), 403, detail_contains="read")
    problem(other_tokens.scoped.post(f"{API}/certificates/renew"), 403, detail_contains="admin")
    assert api_ca.orders == []
    response = admin.post(f"{API}/certificates/renew")
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "acme"
    assert response.json()["serial"] == api_ca.issued[0].serial
    assert "PRIVATE KEY" not in response.text
    api_ca.failure = "the CA could not validate mail.example.com: 404 on the token"
    failed = problem(admin.post(f"{API}/certificates/renew"), 503)
    assert "404 on the token" in failed["detail"]
    status = admin.get(f"{API}/certificates").json()
    assert status["serial"] == api_ca.issued[0].serial  # the old one stays
    assert status["consecutive_failures"] == 1


def test_api_custom_certificate_is_installed(
    admin: TestClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    pair = _now_cert([HOST, "autoconfig.example.com"])
    body = {"certificate_chain": pair.chain_pem.decode(), "private_key": pair.key_pem.decode()}
    response = admin.put(f"{API}/certificates/custom", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "custom"
    assert response.json()["serial"] == pair.serial
    assert "PRIVATE KEY" not in response.text
    assert files.paths(settings.certs_dir).key.read_bytes() == pair.key_pem
    assert [r.status for r in _applies(sessions)] == ["succeeded"]


def _key_material(key_pem: bytes) -> list[str]:
    """Lines of a key's base64 body, to look for in a response."""
    return [line for line in key_pem.decode().splitlines() if not line.startswith("-----")]


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("other key", "does not belong to the certificate"),
        ("expired", "expired"),
        ("not yet valid", "not valid before"),
        ("other hostname", "does not cover the hostname mail.example.com"),
        ("garbage chain", "not a PEM certificate chain"),
        ("garbage key", "not an unencrypted PEM private key"),
        ("key too long", "private_key"),
    ],
)
def test_api_custom_certificate_refusals_never_echo_the_key(
    admin: TestClient,
    settings: Settings,
    sessions: sessionmaker[Session],
    problem: Callable[..., dict[str, Any]],
    *,
    case: str,
    detail: str,
) -> None:
    files.ensure_certificate(settings.certs_dir, HOST)
    before = files.snapshot(settings.certs_dir)
    now = datetime.now(UTC)
    pair = _now_cert([HOST])
    chain, key = pair.chain_pem.decode(), pair.key_pem.decode()
    if case == "other key":
        key = _now_cert([HOST]).key_pem.decode()
    elif case == "expired":
        old = make_cert([HOST], not_before=now - timedelta(days=91), lifetime=DAYS_90)
        chain, key = old.chain_pem.decode(), old.key_pem.decode()
    elif case == "not yet valid":
        future = make_cert([HOST], not_before=now + timedelta(days=1))
        chain, key = future.chain_pem.decode(), future.key_pem.decode()
    elif case == "other hostname":
        other = _now_cert(["mx.example.org"])
        chain, key = other.chain_pem.decode(), other.key_pem.decode()
    elif case == "garbage chain":
        chain = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
    elif case == "garbage key":
        lines = key.splitlines()
        key = "\n".join([lines[0], *(line[::-1] for line in lines[1:-1]), lines[-1]])
    elif case == "key too long":
        key = key + "\n" + "Q" * 20_000
    response = admin.put(
        f"{API}/certificates/custom", json={"certificate_chain": chain, "private_key": key}
    )
    problem(response, 422, detail_contains=detail)
    for line in _key_material(key.encode()):
        assert len(line) < 20 or line[:40] not in response.text
    assert "PRIVATE KEY" not in response.text
    assert files.snapshot(settings.certs_dir) == before
    assert _applies(sessions) == []


def test_api_custom_certificate_for_admins_with_write_access_only(
    other_tokens: Any, settings: Settings, problem: Callable[..., dict[str, Any]]
) -> None:
    files.ensure_certificate(settings.certs_dir, HOST)
    before = files.snapshot(settings.certs_dir)
    pair = _now_cert([HOST])
    body = {"certificate_chain": pair.chain_pem.decode(), "private_key": pair.key_pem.decode()}
    problem(other_tokens.scoped.put(f"{API}/certificates/custom", json=body), 403)
    problem(other_tokens.read_only.put(f"{API}/certificates/custom", json=body), 403)
    assert files.snapshot(settings.certs_dir) == before


def test_deploy_reloads_only_the_services_that_use_the_certificate(
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
    fake_ca: FakeCA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # postgrey restarts its process on a reload; it has no TLS, so a new certificate
    # must leave it alone (issue 15).
    _install(settings, make_cert([HOST], not_before=T0 - timedelta(days=80)))
    runtime = WiredRuntime(settings.config_dir, settings.certs_dir)
    greylist = FakeContainer("postgrey", 1)
    runtime.containers[greylist.name] = greylist
    engine = ConfigEngine(settings, sessions, runtime, gate_timeout=0.05, settle=0)
    first = engine.reconcile(trigger="startup")
    assert first is not None
    assert first["status"] == "succeeded"
    assert greylist.loaded is not None  # rendered and running like the others
    runtime.calls.clear()
    monkeypatch.setattr(engine_module, "served_serial", runtime.served_serial)
    _store_settings(sessions, acme_enabled=True)

    CertificateManager(settings, engine, runtime, clock=clock).renew(actor="renewal scheduler")

    reloaded = {name for name, verb in runtime.ops() if verb == "reload"}
    assert reloaded == {P1, P2, D1, D2}
