"""Mailboxes: logins with a maildir. A row is live for Postfix and Dovecot on commit."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from controller.db.models import Alias, Domain, Mailbox
from controller.domain.access import Context
from controller.domain.domains import require_hosted_domain, restrict_to_visible_domains
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.passwords import hash_password
from controller.domain.setting_rows import stored_or_default
from controller.domain.validation import (
    check_password,
    check_quota_mb,
    parse_address,
)
from controller.errors import Conflict, InvalidInput, NotFound


def _visible_mailbox(ctx: Context, address: str) -> Mailbox:
    try:
        parsed = parse_address(address)
    except InvalidInput as exc:
        raise NotFound(f"mailbox '{address}' not found") from exc
    mailbox = ctx.session.scalar(select(Mailbox).where(Mailbox.address == str(parsed)))
    if mailbox is None or not ctx.principal.sees(parsed.domain):
        raise NotFound(f"mailbox '{parsed}' not found")
    return mailbox


def get_mailbox(ctx: Context, address: str) -> Mailbox:
    return _visible_mailbox(ctx, address)


def list_mailboxes(ctx: Context, page: PageRequest, domain: str | None = None) -> Page[Mailbox]:
    query = select(Mailbox).join(Domain).order_by(Mailbox.address)
    return paginate(ctx.session, restrict_to_visible_domains(ctx, query, domain), page)


def _new_maildir(domain: str, local_part: str) -> str:
    # A random suffix keeps a re-created address from inheriting an old maildir.
    return f"{domain}/{local_part}.{secrets.token_hex(4)}"


def create_mailbox(
    ctx: Context, address: str, password: str, quota_mb: int | None = None, active: bool = True
) -> Mailbox:
    """Create a mailbox; without `quota_mb` it gets the `default_quota_mb` setting."""
    ctx.principal.require_write()
    parsed = parse_address(address)
    domain = require_hosted_domain(ctx, parsed.domain, "address")
    password = check_password(password)
    if quota_mb is None:
        quota_mb = int(stored_or_default(ctx.session, "default_quota_mb"))
    quota_mb = check_quota_mb(quota_mb)
    session = ctx.session
    if session.scalar(select(Mailbox.id).where(Mailbox.address == str(parsed))) is not None:
        raise Conflict(f"mailbox '{parsed}' already exists", field="address")
    if session.scalar(select(Alias.id).where(Alias.address == str(parsed))) is not None:
        raise Conflict(
            f"'{parsed}' is already an alias; delete the alias first or pick another address",
            field="address",
        )
    mailbox = Mailbox(
        domain=domain,
        local_part=parsed.local_part,
        address=str(parsed),
        password_hash=hash_password(password),
        quota_mb=quota_mb,
        active=active,
        maildir=_new_maildir(parsed.domain, parsed.local_part),
    )
    session.add(mailbox)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"mailbox '{parsed}' already exists", field="address") from exc
    # Dovecot may hold a negative cache entry from a failed login before creation.
    ctx.credentials_changed([mailbox.address])
    return mailbox


@dataclass(frozen=True)
class MailboxChanges:
    password: str | None = None
    quota_mb: int | None = None
    active: bool | None = None


def update_mailbox(ctx: Context, address: str, changes: MailboxChanges) -> Mailbox:
    ctx.principal.require_write()
    mailbox = _visible_mailbox(ctx, address)
    if changes.password is not None:
        mailbox.password_hash = hash_password(check_password(changes.password))
    if changes.quota_mb is not None:
        mailbox.quota_mb = check_quota_mb(changes.quota_mb)
    if changes.active is not None:
        mailbox.active = changes.active
    ctx.session.commit()
    ctx.credentials_changed([mailbox.address])
    return mailbox


def delete_mailbox(ctx: Context, address: str) -> None:
    """Delete the mailbox row: it stops receiving and authenticating at once. Its maildir
    stays on the mail volume (removing stored mail is an operator's decision)."""
    ctx.principal.require_write()
    mailbox = _visible_mailbox(ctx, address)
    removed = mailbox.address
    ctx.session.delete(mailbox)
    ctx.session.commit()
    ctx.credentials_changed([removed])
