"""DKIM keys of hosted domains: generate, rotate, activate, retire, delete.

Contract: docs/design/filter-chain.md, table `dkim_keys` and volume `dkim`.

- Keys are made here with `cryptography`: RSA 2048 (default; verified everywhere, and
  its record fits in two 255-byte TXT strings), RSA 3072/4096, or Ed25519 (RFC 8463).
- One active key per domain *and key type* (RSA, Ed25519): many receivers do not verify
  Ed25519 yet, so RFC 8463 recommends signing with both. Activating a key retires the
  previously active key of the same type only; an Ed25519 key added next to an active
  RSA key gives every message two signatures (OpenDKIM runs one instance per type).
- The private key never enters the database: it is written atomically (temporary file,
  fsync, rename) as PKCS#8 PEM to `<dkim dir>/<domain>/<selector>.key`, mode 0640, owner
  root, group 222 (`opendkim` in images/opendkim), which mounts the volume read-only.
- States: `active` signs (at most one per domain and key type), `published` is in DNS but waits
  (a rotation: publish the record, wait for DNS, then activate), `retired` no longer
  signs but stays in DNS so that mail already signed with it still verifies; delete it
  after a few days.
- OpenDKIM reads the active key per domain live from the database (views of migration
  0004), so a change here signs from the next message on without a reload.
- A new domain gets an active key at once (`ensure_domain_key`): there is nothing to
  wait for, as its DNS must be published before mail for it works at all.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.db.models import DkimKey, Domain, utcnow
from controller.domain.access import Context, visible_domain
from controller.errors import Action, Conflict, InvalidInput, NotFound, Unavailable
from controller.services.dkim_keys import KeyStore

DEFAULT_ALGORITHM = "rsa-2048"
RSA_SIZES = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}
ALGORITHMS = (*RSA_SIZES, "ed25519")

ACTIVE = "active"
PUBLISHED = "published"
RETIRED = "retired"
STATES = (ACTIVE, PUBLISHED, RETIRED)

SELECTOR_PREFIX = "mly"
# A rotation needs at most: the active key and its published successor for each type
# (RSA, Ed25519), plus retired keys kept in DNS for a few days while signed mail is in
# flight: about six. Ten leaves room for that and a slow clean-up, while a token that
# may rotate (a scoped one too) cannot pile up key files, DNS records and RSA-4096
# generations (seconds of CPU each) without limit.
MAX_KEYS_PER_DOMAIN = 10


# --- key material ------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyMaterial:
    algorithm: str
    private_pem: bytes  # PKCS#8 PEM, what OpenDKIM's KeyTable file holds
    public_key: str  # the DNS p= value


def check_algorithm(algorithm: str, field: str = "algorithm") -> str:
    if algorithm not in ALGORITHMS:
        raise InvalidInput(
            f"{field} '{algorithm}' is not supported; use one of {', '.join(ALGORITHMS)} "
            f"(default {DEFAULT_ALGORITHM})",
            field=field,
        )
    return algorithm


def generate_key(algorithm: str = DEFAULT_ALGORITHM) -> KeyMaterial:
    """A new key pair. RSA: p= is the base64 SubjectPublicKeyInfo DER (RFC 6376 3.6.1);
    Ed25519: p= is the base64 of the raw 32-byte public key (RFC 8463 4.2)."""
    check_algorithm(algorithm)
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ed25519":
        private_key = ed25519.Ed25519PrivateKey.generate()
        public_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_SIZES[algorithm])
        public_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyMaterial(algorithm, private_pem, base64.b64encode(public_bytes).decode("ascii"))


def key_type(algorithm: str) -> str:
    """The DNS record's k= tag."""
    return "ed25519" if algorithm == "ed25519" else "rsa"


def txt_value(algorithm: str, public_key: str) -> str:
    """The TXT record published at `<selector>._domainkey.<domain>`."""
    return f"v=DKIM1; k={key_type(algorithm)}; p={public_key}"


def record_name(selector: str) -> str:
    """The record's name relative to the domain."""
    return f"{selector}._domainkey"


# --- use cases ---------------------------------------------------------------------------


def _writable_domain(ctx: Context, name: str) -> Domain:
    domain = visible_domain(ctx, name)
    ctx.principal.require_domain_write(domain.name)
    return domain


def _keys_of(session: Session, domain: Domain) -> list[DkimKey]:
    return list(
        session.scalars(
            select(DkimKey)
            .where(DkimKey.domain_id == domain.id)
            .order_by(DkimKey.created_at, DkimKey.id)
        )
    )


def _key(session: Session, domain: Domain, selector: str) -> DkimKey:
    key = session.scalar(
        select(DkimKey).where(DkimKey.domain_id == domain.id, DkimKey.selector == selector)
    )
    if key is None:
        raise NotFound(f"domain '{domain.name}' has no DKIM key with selector '{selector}'")
    return key


def list_keys(ctx: Context, name: str) -> tuple[Domain, list[DkimKey]]:
    domain = visible_domain(ctx, name)
    return domain, _keys_of(ctx.session, domain)


def new_selector(taken: set[str], now: datetime | None = None) -> str:
    """`mly<yyyymm>`, then `mly<yyyymm>-2`, `-3`, ... when taken (two rotations a month)."""
    moment = now or datetime.now(UTC)
    base = f"{SELECTOR_PREFIX}{moment:%Y%m}"
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _create(
    session: Session, domain: Domain, store: KeyStore, algorithm: str, state: str
) -> DkimKey:
    """Write the key file, then the row; a failed commit removes the file again."""
    taken = {key.selector for key in _keys_of(session, domain)}
    selector = new_selector(taken)
    while store.exists(domain.name, selector):  # a file left behind by a crash
        taken.add(selector)
        selector = new_selector(taken)
    material = generate_key(algorithm)
    store.write(domain.name, selector, material.private_pem)
    key = DkimKey(
        domain_id=domain.id,
        selector=selector,
        algorithm=algorithm,
        public_key=material.public_key,
        state=state,
        activated_at=utcnow() if state == ACTIVE else None,
    )
    session.add(key)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        store.remove(domain.name, selector)
        raise Conflict(
            f"selector '{selector}' of '{domain.name}' was taken at the same time; try again"
        ) from exc
    except BaseException:
        session.rollback()
        store.remove(domain.name, selector)
        raise
    return key


def ensure_domain_key(
    session: Session, domain: Domain, store: KeyStore, algorithm: str = DEFAULT_ALGORITHM
) -> DkimKey | None:
    """Give a domain without any key an active one (called when a domain is created, and
    for domains that predate DKIM). Returns the new key, or None if it had one."""
    if session.scalar(select(DkimKey.id).where(DkimKey.domain_id == domain.id).limit(1)):
        return None
    return _create(session, domain, store, check_algorithm(algorithm), ACTIVE)


def ensure_all_domains(session: Session, store: KeyStore) -> list[str]:
    """`ensure_domain_key` for every domain; returns the domains that got a key."""
    created = []
    for domain in session.scalars(select(Domain).order_by(Domain.name)).all():
        if ensure_domain_key(session, domain, store) is not None:
            created.append(domain.name)
    return created


def _key_files(ctx: Context) -> KeyStore:
    if ctx.dkim_keys is None:
        raise Unavailable("the DKIM key volume is not available to this process")
    return ctx.dkim_keys


def rotate(ctx: Context, name: str, algorithm: str | None = None) -> DkimKey:
    """A new key in state `published`: publish its record, wait for DNS (at least the
    TTL), then activate it. A domain without an active key gets it active at once."""
    store = _key_files(ctx)
    ctx.principal.require_write()
    domain = _writable_domain(ctx, name)
    chosen = check_algorithm(algorithm or DEFAULT_ALGORITHM)
    keys = _keys_of(ctx.session, domain)
    # Two rotations at the same moment may both pass this check: the cap is a guard
    # against piling up, not an exact quota, so one key over is harmless.
    if len(keys) >= MAX_KEYS_PER_DOMAIN:
        retired = [key.selector for key in keys if key.state == RETIRED]
        hint = (
            f"delete retired keys first (retired: {', '.join(retired)})"
            if retired
            else "activate one of the published keys and delete the keys it retires"
        )
        delete = f"DELETE /api/v1/domains/{domain.name}/dkim/{{selector}}"
        raise InvalidInput(
            f"domain '{domain.name}' already has {len(keys)} DKIM keys, the most a domain "
            f"may have ({MAX_KEYS_PER_DOMAIN}); {hint}",
            # DKIM keys are managed through the API only: the command has no DKIM actions.
            action=Action(api=delete, cli=f"{delete} through the API") if retired else None,
        )
    has_active = any(key.state == ACTIVE for key in keys)
    return _create(ctx.session, domain, store, chosen, PUBLISHED if has_active else ACTIVE)


def activate(ctx: Context, name: str, selector: str) -> DkimKey:
    """Make `selector` a signing key; the previously active key of the same type (RSA or
    Ed25519) becomes `retired`. A retired key may be activated again (going back after a
    bad rotation)."""
    ctx.principal.require_write()
    domain = _writable_domain(ctx, name)
    key = _key(ctx.session, domain, selector)
    if key.state == ACTIVE:
        return key
    for other in _keys_of(ctx.session, domain):
        if other.state == ACTIVE and key_type(other.algorithm) == key_type(key.algorithm):
            other.state = RETIRED
    # Flush the retirement first: at no moment are two keys of one type active.
    ctx.session.flush()
    key.state = ACTIVE
    key.activated_at = utcnow()
    ctx.session.commit()
    return key


def delete_key(ctx: Context, name: str, selector: str) -> None:
    """Delete a key that does not sign (its DNS record should go too). An active key
    cannot be deleted: activate another one first."""
    store = _key_files(ctx)
    ctx.principal.require_write()
    domain = _writable_domain(ctx, name)
    key = _key(ctx.session, domain, selector)
    if key.state == ACTIVE:
        raise InvalidInput(
            f"'{selector}' is the active DKIM key of '{domain.name}' and cannot be deleted; "
            "rotate to a new key and activate it first",
            field="selector",
        )
    ctx.session.delete(key)
    ctx.session.commit()
    store.remove(domain.name, selector)


def forget_domain(store: KeyStore, name: str) -> None:
    """After a domain was deleted (its rows went with it, ON DELETE CASCADE): remove its
    key files. Best effort: a leftover file signs nothing without its row."""
    with contextlib.suppress(OSError, ValueError):
        store.remove_domain(name)
