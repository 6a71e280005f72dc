"""The TLS certificate Postfix and Dovecot serve: self-signed at first start.

Files in the certificates volume: `privkey.pem` (0600, root) and `fullchain.pem`
(leaf first). Both daemons read the key as root before dropping privileges.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.errors import InvalidInput

KEY_FILE = "privkey.pem"
CHAIN_FILE = "fullchain.pem"
SELF_SIGNED_DAYS = 365


@dataclass(frozen=True)
class CertificatePaths:
    key: Path
    chain: Path


def paths(certs_dir: Path) -> CertificatePaths:
    return CertificatePaths(key=certs_dir / KEY_FILE, chain=certs_dir / CHAIN_FILE)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def make_self_signed(hostname: str, now: datetime | None = None) -> tuple[bytes, bytes]:
    """A P-256 key and a self-signed certificate for `hostname` (PEM key, PEM cert)."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def _is_our_self_signed_for_another_name(chain: Path, hostname: str) -> bool:
    """True for a self-signed certificate (issuer == subject) that does not name
    `hostname`: the one made at an earlier start under another MAILYARD_HOSTNAME."""
    try:
        certificate = x509.load_pem_x509_certificate(chain.read_bytes())
    except ValueError:
        return False
    if certificate.issuer != certificate.subject:
        return False  # issued by a CA (ACME or the admin's own): never replaced here
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return True
    return hostname not in names.value.get_values_for_type(x509.DNSName)


def ensure_certificate(certs_dir: Path, hostname: str) -> bool:
    """Make sure a certificate is installed; returns True if one was created.

    Creates a self-signed one at first start, and again when the hostname changed and
    the installed one is our own self-signed certificate. The key is written before the
    chain: a reader never finds a chain without its key.
    """
    target = paths(certs_dir)
    if (
        target.key.exists()
        and target.chain.exists()
        and not _is_our_self_signed_for_another_name(target.chain, hostname)
    ):
        return False
    certs_dir.mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = make_self_signed(hostname)
    _write_atomic(target.key, key_pem, 0o600)
    _write_atomic(target.chain, cert_pem, 0o644)
    return True


@dataclass(frozen=True)
class CertificateSnapshot:
    """The installed key and chain, to put back if a change that replaced them fails."""

    key: bytes | None
    chain: bytes | None


def snapshot(certs_dir: Path) -> CertificateSnapshot:
    target = paths(certs_dir)
    return CertificateSnapshot(
        key=target.key.read_bytes() if target.key.exists() else None,
        chain=target.chain.read_bytes() if target.chain.exists() else None,
    )


def restore(certs_dir: Path, saved: CertificateSnapshot) -> None:
    target = paths(certs_dir)
    if saved.key is not None and saved.chain is not None:
        _write_atomic(target.key, saved.key, 0o600)
        _write_atomic(target.chain, saved.chain, 0o644)


@dataclass(frozen=True)
class CertificateInfo:
    """What the API shows of a certificate (never its key)."""

    names: list[str]
    issuer: str
    serial: str  # hex, as `openssl x509 -serial` prints it
    not_before: datetime
    not_after: datetime
    self_signed: bool

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before


def describe(chain_pem: bytes) -> CertificateInfo:
    """The leaf (first certificate) of a PEM chain."""
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        # DNS names are case-insensitive; compare them lowercased everywhere.
        dns_names = [name.lower() for name in names.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        dns_names = []
    return CertificateInfo(
        names=dns_names,
        issuer=leaf.issuer.rfc4514_string(),
        serial=f"{leaf.serial_number:X}",
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        self_signed=leaf.issuer == leaf.subject,
    )


def installed(certs_dir: Path) -> CertificateInfo | None:
    chain = paths(certs_dir).chain
    try:
        return describe(chain.read_bytes())
    except (FileNotFoundError, ValueError, IndexError):
        return None


def install(certs_dir: Path, key_pem: bytes, chain_pem: bytes) -> None:
    """Write a key and chain atomically, key first (0600), so a reader never finds a
    chain without its key. The daemons pick them up at their next reload."""
    target = paths(certs_dir)
    certs_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(target.key, key_pem, 0o600)
    _write_atomic(target.chain, chain_pem, 0o644)


def _covers(names: list[str], hostname: str) -> bool:
    for name in names:
        if name == hostname:
            return True
        if name.startswith("*.") and hostname.split(".", 1)[-1] == name[2:]:
            return True
    return False


def check_custom(chain_pem: bytes, key_pem: bytes, hostname: str, now: datetime) -> CertificateInfo:
    """A certificate an admin brings: parseable, its key, valid now, for the hostname.
    Raises InvalidInput naming what is wrong; the key is never echoed."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise InvalidInput("certificate_chain is not a PEM certificate chain") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "private_key is not an unencrypted PEM private key", field="private_key"
        ) from exc
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != leaf.public_key().public_bytes(serialization.Encoding.DER, public):
        raise InvalidInput(
            "the private key does not belong to the certificate (the first one in the chain)",
            field="private_key",
        )
    info = describe(chain_pem)
    if info.not_after <= now:
        raise InvalidInput(f"the certificate expired at {info.not_after.isoformat()}")
    if info.not_before > now:
        raise InvalidInput(f"the certificate is not valid before {info.not_before.isoformat()}")
    if not _covers(info.names, hostname):
        raise InvalidInput(
            f"the certificate does not cover the hostname {hostname} (it names: "
            f"{', '.join(info.names) or 'nothing'})"
        )
    return info
