"""controller/services/certificates.py: the self-signed certificate of the first start."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.services.certificates import ensure_certificate, paths


def _load(certs_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(paths(certs_dir).chain.read_bytes())


def _pair_matches(certs_dir: Path) -> bool:
    key = serialization.load_pem_private_key(paths(certs_dir).key.read_bytes(), password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    public = _load(certs_dir).public_key()
    return key.public_key().public_bytes(der, spki) == public.public_bytes(der, spki)


def test_creates_a_private_key_readable_by_root_only(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert ensure_certificate(certs, "mail.example.com") is True
    key_file = certs / "privkey.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # Nothing half-written is left next to the files.
    assert sorted(p.name for p in certs.iterdir()) == ["fullchain.pem", "privkey.pem"]


def test_certificate_names_the_host_and_is_valid_now(tmp_path: Path) -> None:
    ensure_certificate(tmp_path, "mail.example.com")
    certificate = _load(tmp_path)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.com"]
    now = datetime.now(UTC)
    assert certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc
    assert (certificate.not_valid_after_utc - now).days >= 300
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert stat.S_IMODE(paths(tmp_path).chain.stat().st_mode) == 0o644


def test_key_and_certificate_belong_together(tmp_path: Path) -> None:
    ensure_certificate(tmp_path, "mail.example.com")
    assert _pair_matches(tmp_path)


def test_existing_certificate_for_the_same_host_is_kept(tmp_path: Path) -> None:
    assert ensure_certificate(tmp_path, "mail.example.com") is True
    key_before = paths(tmp_path).key.read_bytes()
    chain_before = paths(tmp_path).chain.read_bytes()
    assert ensure_certificate(tmp_path, "mail.example.com") is False
    assert paths(tmp_path).key.read_bytes() == key_before
    assert paths(tmp_path).chain.read_bytes() == chain_before


def test_our_self_signed_certificate_follows_a_new_hostname(tmp_path: Path) -> None:
    ensure_certificate(tmp_path, "mail.example.com")
    key_before = paths(tmp_path).key.read_bytes()
    assert ensure_certificate(tmp_path, "other.example.com") is True
    san = _load(tmp_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["other.example.com"]
    assert paths(tmp_path).key.read_bytes() != key_before
    assert _pair_matches(tmp_path)


def _install_ca_issued(certs_dir: Path, hostname: str) -> None:
    """Install a leaf signed by a separate CA, like an ACME or operator certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs_dir.mkdir(parents=True, exist_ok=True)
    paths(certs_dir).key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths(certs_dir).chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))


def test_a_ca_issued_certificate_is_never_replaced(tmp_path: Path) -> None:
    _install_ca_issued(tmp_path, "mail.example.com")
    key_before = paths(tmp_path).key.read_bytes()
    chain_before = paths(tmp_path).chain.read_bytes()
    # Even when the host name no longer matches: an installed certificate from a CA is
    # the operator's (or ACME's), not ours to overwrite.
    assert ensure_certificate(tmp_path, "other.example.com") is False
    assert paths(tmp_path).key.read_bytes() == key_before
    assert paths(tmp_path).chain.read_bytes() == chain_before


def test_half_installed_pair_is_replaced_by_a_matching_one(tmp_path: Path) -> None:
    ensure_certificate(tmp_path, "mail.example.com")
    paths(tmp_path).chain.unlink()
    old_key = paths(tmp_path).key.read_bytes()
    assert ensure_certificate(tmp_path, "mail.example.com") is True
    assert paths(tmp_path).key.read_bytes() != old_key
    assert _pair_matches(tmp_path)
