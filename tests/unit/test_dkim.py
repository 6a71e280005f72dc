"""DKIM keys: generation, signing that verifies against the published record, rotation,
activation, deletion, domain lifecycle and token scoping."""

from __future__ import annotations

import base64
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_private_key
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from controller.domain import dkim
from controller.services.dkim_keys import SELECTOR, KeyStore
from controller.settings import Settings

API = "/api/v1"
Problem = Callable[..., dict[str, Any]]

MESSAGE = (
    b"From: Alice <alice@a.example>\r\n"
    b"To: bob@elsewhere.example\r\n"
    b"Subject: hello\r\n"
    b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@a.example>\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)


def _keys(client: TestClient, domain: str = "a.example") -> list[dict[str, Any]]:
    response = client.get(f"{API}/domains/{domain}/dkim")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["domain"] == domain
    return list(body["keys"])


def _dns_txt(client: TestClient, domain: str) -> dict[str, str]:
    response = client.get(f"{API}/domains/{domain}/dns")
    assert response.status_code == 200, response.text
    return {r["name"]: r["value"] for r in response.json()["records"] if r["type"] == "TXT"}


def _sign_and_verify(
    client: TestClient, settings: Settings, domain: str, selector: str
) -> tuple[bool, bytes, Callable[..., bytes | None]]:
    """Sign MESSAGE with the key file, verify with the TXT record the API publishes."""
    key_file = settings.resolved_dkim_dir() / domain / f"{selector}.key"
    records = _dns_txt(client, domain)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value else None

    is_ed25519 = "k=ed25519" in records[f"{selector}._domainkey.{domain}"]
    algorithm = b"ed25519-sha256" if is_ed25519 else b"rsa-sha256"
    private = key_file.read_bytes()  # PKCS#8 PEM, as OpenDKIM reads it
    if is_ed25519:
        # dkimpy wants the raw 32-byte seed, base64 (its own format, not OpenDKIM's).
        key = load_pem_private_key(private, None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        private = base64.b64encode(key.private_bytes_raw())
    signature = dkimpy.sign(
        MESSAGE.replace(b"a.example", domain.encode()),
        selector.encode(),
        domain.encode(),
        private,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        signature_algorithm=algorithm,
        canonicalize=(b"relaxed", b"relaxed"),
    )
    signed = signature + MESSAGE.replace(b"a.example", domain.encode())
    return dkimpy.verify(signed, dnsfunc=dnsfunc), signed, dnsfunc


# --- key material --------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["rsa-2048", "rsa-3072", "ed25519"])
def test_generated_keys_have_the_published_public_half(algorithm: str) -> None:
    material = dkim.generate_key(algorithm)
    assert material.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    raw = base64.b64decode(material.public_key)
    if algorithm == "ed25519":
        # RFC 8463: p= is the raw 32-byte key, not a SubjectPublicKeyInfo.
        assert len(raw) == 32
        assert dkim.txt_value(algorithm, material.public_key).startswith("v=DKIM1; k=ed25519; p=")
    else:
        public = load_der_public_key(raw)
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.key_size == dkim.RSA_SIZES[algorithm]
        assert dkim.txt_value(algorithm, material.public_key).startswith("v=DKIM1; k=rsa; p=")


def test_ed25519_public_value_matches_the_private_key() -> None:
    material = dkim.generate_key("ed25519")
    private = load_pem_private_key(material.private_pem, None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert private.public_key().public_bytes_raw() == base64.b64decode(material.public_key)


def test_selectors_are_dated_and_suffixed_when_taken() -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    assert dkim.new_selector(set(), now) == "mly202611"
    assert dkim.new_selector({"mly202611"}, now) == "mly202611-2"
    assert dkim.new_selector({"mly202611", "mly202611-2"}, now) == "mly202611-3"
    assert SELECTOR.fullmatch("mly202611-3")


def test_key_files_are_written_atomically_for_opendkims_group(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "dkim")
    path = store.write("a.example", "mly202611", b"key")
    assert path == tmp_path / "dkim" / "a.example" / "mly202611.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert [p.name for p in path.parent.iterdir()] == ["mly202611.key"]  # no temp files
    with pytest.raises(ValueError, match="refusing"):
        store.path("a.example", "../etc")


# --- through the API -----------------------------------------------------------------------
def test_a_new_domain_gets_an_active_rsa_key_that_signs_verifiably(
    make: Any, admin: TestClient, settings: Settings
) -> None:
    make.domain("a.example")
    keys = _keys(admin)
    assert len(keys) == 1
    key = keys[0]
    assert key["algorithm"] == "rsa-2048"
    assert key["state"] == "active"
    assert key["dns_name"] == f"{key['selector']}._domainkey.a.example"
    assert key["dns_value"].startswith("v=DKIM1; k=rsa; p=")
    key_file = settings.resolved_dkim_dir() / "a.example" / f"{key['selector']}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o640
    verified, signed, dnsfunc = _sign_and_verify(admin, settings, "a.example", key["selector"])
    assert verified
    # A changed body does not verify: the check above is meaningful.
    assert not dkimpy.verify(signed.replace(b"Hello Bob", b"Hello Eve"), dnsfunc=dnsfunc)


def test_private_keys_never_appear_in_responses(make: Any, admin: TestClient) -> None:
    make.domain("a.example")
    for response in (
        admin.get(f"{API}/domains/a.example/dkim"),
        admin.post(f"{API}/domains/a.example/dkim/rotate", json={"algorithm": "ed25519"}),
        admin.get(f"{API}/domains/a.example/dns"),
        admin.get(f"{API}/domains/a.example/dns?format=zone"),
    ):
        assert response.status_code in (200, 201), response.text
        assert "PRIVATE" not in response.text


def test_ed25519_rotation_signs_verifiably_once_active(
    make: Any, admin: TestClient, settings: Settings
) -> None:
    make.domain("a.example")
    rotated = admin.post(f"{API}/domains/a.example/dkim/rotate", json={"algorithm": "ed25519"})
    assert rotated.status_code == 201, rotated.text
    key = rotated.json()
    assert key["state"] == "published"
    assert key["dns_value"].startswith("v=DKIM1; k=ed25519; p=")
    activated = admin.post(f"{API}/domains/a.example/dkim/{key['selector']}/activate")
    assert activated.status_code == 200, activated.text
    assert activated.json()["state"] == "active"
    states = {k["algorithm"]: k["state"] for k in _keys(admin)}
    # One active key per type: the RSA key keeps signing next to the Ed25519 key.
    assert states == {"rsa-2048": "active", "ed25519": "active"}
    verified, _, _ = _sign_and_verify(admin, settings, "a.example", key["selector"])
    assert verified


def test_rotate_activate_retire_delete(
    make: Any, admin: TestClient, settings: Settings, problem: Problem
) -> None:
    make.domain("a.example")
    [first] = _keys(admin)
    second = admin.post(f"{API}/domains/a.example/dkim/rotate").json()
    assert second["state"] == "published"
    assert second["algorithm"] == "rsa-2048"
    assert second["selector"] != first["selector"]
    # Published keys are in DNS already, ahead of activation.
    assert f"{second['selector']}._domainkey.a.example" in _dns_txt(admin, "a.example")

    response = admin.post(f"{API}/domains/a.example/dkim/{second['selector']}/activate")
    assert response.status_code == 200
    states = {k["selector"]: k["state"] for k in _keys(admin)}
    assert states == {first["selector"]: "retired", second["selector"]: "active"}
    # Retired keys stay in DNS so mail they signed still verifies.
    assert f"{first['selector']}._domainkey.a.example" in _dns_txt(admin, "a.example")

    problem(
        admin.delete(f"{API}/domains/a.example/dkim/{second['selector']}"),
        422,
        detail_contains="active",
    )
    key_dir = settings.resolved_dkim_dir() / "a.example"
    assert (key_dir / f"{first['selector']}.key").exists()
    response = admin.delete(f"{API}/domains/a.example/dkim/{first['selector']}")
    assert response.status_code == 204
    assert not (key_dir / f"{first['selector']}.key").exists()
    assert [k["selector"] for k in _keys(admin)] == [second["selector"]]
    assert f"{first['selector']}._domainkey.a.example" not in _dns_txt(admin, "a.example")

    # A retired key can be brought back (undo a bad rotation).
    third = admin.post(f"{API}/domains/a.example/dkim/rotate").json()
    admin.post(f"{API}/domains/a.example/dkim/{third['selector']}/activate")
    response = admin.post(f"{API}/domains/a.example/dkim/{second['selector']}/activate")
    assert response.json()["state"] == "active"
    assert {k["selector"]: k["state"] for k in _keys(admin)}[third["selector"]] == "retired"


def test_bad_input_is_refused_clearly(make: Any, admin: TestClient, problem: Problem) -> None:
    make.domain("a.example")
    problem(
        admin.post(f"{API}/domains/a.example/dkim/rotate", json={"algorithm": "rsa-1024"}),
        422,
        detail_contains="rsa-2048",
    )
    problem(
        admin.post(f"{API}/domains/a.example/dkim/rotate", json={"algorithm": 5}),
        422,
    )
    problem(admin.post(f"{API}/domains/a.example/dkim/nope/activate"), 404, detail_contains="nope")
    problem(admin.delete(f"{API}/domains/a.example/dkim/nope"), 404)
    problem(admin.get(f"{API}/domains/missing.example/dkim"), 404)
    problem(admin.post(f"{API}/domains/missing.example/dkim/rotate"), 404)
    assert len(_keys(admin)) == 1


def test_deleting_a_domain_removes_its_keys_and_files(
    make: Any, admin: TestClient, settings: Settings, engine: Engine
) -> None:
    make.domain("a.example")
    admin.post(f"{API}/domains/a.example/dkim/rotate")
    key_dir = settings.resolved_dkim_dir() / "a.example"
    assert len(list(key_dir.iterdir())) == 2
    assert admin.delete(f"{API}/domains/a.example").status_code == 204
    assert not key_dir.exists()
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT COUNT(*) FROM dkim_keys")) == 0
    # Created again: a fresh key, nothing inherited.
    make.domain("a.example")
    assert len(_keys(admin)) == 1


def test_opendkim_views_show_active_keys_per_type(
    make: Any, admin: TestClient, engine: Engine
) -> None:
    make.domain("a.example")
    ed = admin.post(f"{API}/domains/a.example/dkim/rotate", json={"algorithm": "ed25519"}).json()
    with engine.connect() as connection:
        rsa_rows = connection.execute(text("SELECT author FROM dkim_signing_table")).all()
        ed_rows = connection.execute(text("SELECT author FROM dkim_signing_table_ed25519")).all()
    assert rsa_rows == [("a.example",)]
    assert ed_rows == []  # published, not active
    admin.post(f"{API}/domains/a.example/dkim/{ed['selector']}/activate")
    with engine.connect() as connection:
        ed_rows = connection.execute(text("SELECT author FROM dkim_signing_table_ed25519")).all()
        paths = connection.execute(
            text("SELECT domain_name, selector, key_path FROM dkim_key_table ORDER BY key_path")
        ).all()
    assert ed_rows == [("a.example",)]
    assert all(
        path == f"/var/lib/mailyard-dkim/{domain}/{selector}.key"
        for domain, selector, path in paths
    )
    assert len(paths) == 2


def test_ensure_all_domains_fills_in_domains_without_keys(
    make: Any, sessions: Any, settings: Settings, engine: Engine
) -> None:
    make.domain("a.example")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM dkim_keys"))
    store = KeyStore(settings.resolved_dkim_dir())
    with sessions() as session:
        assert dkim.ensure_all_domains(session, store) == ["a.example"]
        assert dkim.ensure_all_domains(session, store) == []


# --- token scoping ---------------------------------------------------------------------------
@pytest.fixture
def scoped_clients(
    make: Any, admin: TestClient, client_for: Callable[[str], TestClient]
) -> dict[str, TestClient]:
    make.domain("a.example")
    make.domain("b.example")
    clients = {}
    for key, body in {
        "scoped": {"name": "scoped", "domains": ["a.example"]},
        "scoped_ro": {"name": "scoped-ro", "domains": ["a.example"], "read_only": True},
    }.items():
        response = admin.post(f"{API}/tokens", json=body)
        assert response.status_code == 201, response.text
        clients[key] = client_for(response.json()["token"])
    return clients


def test_a_scoped_token_manages_the_keys_of_its_domains_only(
    scoped_clients: dict[str, TestClient], admin: TestClient, problem: Problem
) -> None:
    scoped = scoped_clients["scoped"]
    assert len(_keys(scoped, "a.example")) == 1
    rotated = scoped.post(f"{API}/domains/a.example/dkim/rotate")
    assert rotated.status_code == 201, rotated.text
    selector = rotated.json()["selector"]
    assert scoped.post(f"{API}/domains/a.example/dkim/{selector}/activate").status_code == 200
    assert scoped.get(f"{API}/domains/a.example/dns").status_code == 200
    # Out of scope: as if it did not exist.
    [b_key] = _keys(admin, "b.example")
    for response in (
        scoped.get(f"{API}/domains/b.example/dkim"),
        scoped.get(f"{API}/domains/b.example/dns"),
        scoped.post(f"{API}/domains/b.example/dkim/rotate"),
        scoped.post(f"{API}/domains/b.example/dkim/{b_key['selector']}/activate"),
        scoped.delete(f"{API}/domains/b.example/dkim/{b_key['selector']}"),
    ):
        problem(response, 404)
    assert len(_keys(admin, "b.example")) == 1


def test_read_only_tokens_read_but_never_change_keys(
    scoped_clients: dict[str, TestClient], problem: Problem
) -> None:
    read_only = scoped_clients["scoped_ro"]
    [key] = _keys(read_only, "a.example")
    problem(read_only.post(f"{API}/domains/a.example/dkim/rotate"), 403, detail_contains="read")
    problem(read_only.post(f"{API}/domains/a.example/dkim/{key['selector']}/activate"), 403)
    problem(read_only.delete(f"{API}/domains/a.example/dkim/{key['selector']}"), 403)
    assert len(_keys(read_only, "a.example")) == 1


def test_unauthenticated_requests_are_refused(client: TestClient, problem: Problem) -> None:
    problem(client.get(f"{API}/domains/a.example/dkim"), 401)
    problem(client.get(f"{API}/domains/a.example/dns"), 401)


def test_the_number_of_keys_per_domain_is_capped(
    make: Any, admin: TestClient, problem: Problem, settings: Settings
) -> None:
    make.domain("a.example")  # comes with one active RSA key
    rotate = f"{API}/domains/a.example/dkim/rotate"
    ed25519 = {"algorithm": "ed25519"}  # fast to generate
    selectors = [admin.post(rotate, json=ed25519).json()["selector"] for _ in range(9)]
    assert len(_keys(admin)) == dkim.MAX_KEYS_PER_DOMAIN == 10
    problem(admin.post(rotate, json=ed25519), 422, detail_contains="already has 10 DKIM keys")
    problem(admin.post(rotate), 422, detail_contains="activate one of the published keys")
    for selector in selectors[:2]:
        assert admin.post(f"{API}/domains/a.example/dkim/{selector}/activate").status_code == 200
    # The first one is retired now: the refusal names it as the one to delete.
    problem(admin.post(rotate, json=ed25519), 422, detail_contains=f"retired: {selectors[0]}")
    assert len(list((settings.resolved_dkim_dir() / "a.example").iterdir())) == 10
    assert admin.delete(f"{API}/domains/a.example/dkim/{selectors[0]}").status_code == 204
    assert admin.post(rotate, json=ed25519).status_code == 201
