"""The quarantine Amavis keeps in SQL: list, release (through AM.PDP), delete.

Amavis writes `msgs` (one row per message), `msgrcpt` (its recipients), `maddr`
(addresses) and `quarantine` (the message in chunks); see docs/design/filter-chain.md.
A domain-scoped token sees a message when one of its recipients is in its domains, and
sees only those recipients: it can neither learn nor act on other domains' recipients.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Select, delete, select, update

from controller.db.models import AmavisMaddr, AmavisMsg, AmavisMsgRcpt, AmavisQuarantine
from controller.domain.access import Context
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.validation import normalize_domain, parse_address
from controller.errors import InvalidInput, NotFound

# msgs.content -> what the API calls it. S: at the kill level, Y: at the tag2 level.
CONTENT_TYPES = {"V": "virus", "B": "banned", "S": "spam", "Y": "spam"}
QUAR_TYPE_SQL = "Q"
RELEASED = "R"
# Amavis mail ids: 12 characters of base64 with '-' for '/' (up to 16 stored).
_MAIL_ID = re.compile(r"[A-Za-z0-9+_-]{1,16}")


class ReleaseReply(Protocol):
    @property
    def replies(self) -> tuple[str, ...]: ...


class Releaser(Protocol):
    """What a release needs from Amavis (controller.services.amavis_pdp.AmavisPdpClient)."""

    def release(
        self,
        mail_id: str,
        secret_id: str,
        *,
        partition_tag: int | None = None,
        recipients: Sequence[str] = (),
        requested_by: str = "",
    ) -> ReleaseReply: ...


@dataclass(frozen=True)
class QuarantineRecipient:
    address: str
    released: bool


@dataclass(frozen=True)
class QuarantineEntry:
    mail_id: str
    partition_tag: int
    received_at: datetime
    content: str
    sender: str
    recipients: tuple[QuarantineRecipient, ...]
    subject: str
    from_header: str
    message_id: str
    spam_score: float | None
    size: int


@dataclass(frozen=True)
class ReleaseOutcome:
    mail_id: str
    released_to: tuple[str, ...]  # empty: every original recipient (Amavis decides)
    amavis_reply: tuple[str, ...]


def _reversed(domain: str) -> str:
    """maddr.domain holds the domain with its labels reversed (org.example.mail)."""
    return ".".join(reversed(domain.split(".")))


def _visible_domains(ctx: Context, domain: str | None) -> frozenset[str] | None:
    """Domains whose recipients the caller may see here; None = every domain."""
    if domain is not None:
        name = normalize_domain(domain, "domain")
        if not ctx.principal.sees(name):
            raise NotFound(f"domain '{name}' not found")
        return frozenset({name})
    if ctx.principal.is_admin:
        return None
    return ctx.principal.domains


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _quarantined() -> Select[AmavisMsg]:
    return select(AmavisMsg).where(
        AmavisMsg.content.in_(sorted(CONTENT_TYPES)), AmavisMsg.quar_type == QUAR_TYPE_SQL
    )


def _with_recipient_in(query: Select[AmavisMsg], domains: frozenset[str]) -> Select[AmavisMsg]:
    recipient = (
        select(AmavisMsgRcpt.rid)
        .join(AmavisMaddr, AmavisMaddr.id == AmavisMsgRcpt.rid)
        .where(
            AmavisMsgRcpt.partition_tag == AmavisMsg.partition_tag,
            AmavisMsgRcpt.mail_id == AmavisMsg.mail_id,
            AmavisMaddr.domain.in_(sorted(_reversed(name) for name in domains)),
        )
    )
    return query.where(recipient.exists())


@dataclass(frozen=True)
class _Recipient:
    rseqnum: int
    address: str
    domain: str
    released: bool


def _recipients(
    ctx: Context, messages: Sequence[AmavisMsg]
) -> dict[tuple[int, bytes], list[_Recipient]]:
    if not messages:
        return {}
    rows = ctx.session.execute(
        select(
            AmavisMsgRcpt.partition_tag,
            AmavisMsgRcpt.mail_id,
            AmavisMsgRcpt.rseqnum,
            AmavisMsgRcpt.rs,
            AmavisMaddr.email,
            AmavisMaddr.domain,
        )
        .join(AmavisMaddr, AmavisMaddr.id == AmavisMsgRcpt.rid)
        .where(AmavisMsgRcpt.mail_id.in_(sorted({message.mail_id for message in messages})))
        .order_by(AmavisMsgRcpt.rseqnum)
    )
    found: dict[tuple[int, bytes], list[_Recipient]] = {}
    for partition_tag, mail_id, rseqnum, rs, email, domain in rows:
        address = _text(email)
        # Amavis stores the domain reversed; the address is the reliable source.
        name = address.rpartition("@")[2].lower() if "@" in address else _reversed(domain)
        found.setdefault((partition_tag, mail_id), []).append(
            _Recipient(rseqnum, address, name, (rs or "").strip() == RELEASED)
        )
    return found


def _senders(ctx: Context, messages: Sequence[AmavisMsg]) -> dict[int, str]:
    ids = sorted({message.sid for message in messages})
    if not ids:
        return {}
    rows = ctx.session.execute(
        select(AmavisMaddr.id, AmavisMaddr.email).where(AmavisMaddr.id.in_(ids))
    )
    return {sid: _text(email) for sid, email in rows}


def _entry(message: AmavisMsg, sender: str, recipients: Sequence[_Recipient]) -> QuarantineEntry:
    return QuarantineEntry(
        mail_id=_text(message.mail_id),
        partition_tag=message.partition_tag,
        received_at=datetime.fromtimestamp(message.time_num, UTC).replace(tzinfo=None),
        content=CONTENT_TYPES.get(message.content or "", "unknown"),
        sender=sender,
        recipients=tuple(QuarantineRecipient(r.address, r.released) for r in recipients),
        subject=_text(message.subject),
        from_header=_text(message.from_addr),
        message_id=_text(message.message_id),
        spam_score=message.spam_level,
        size=message.size,
    )


def _shown(recipients: Sequence[_Recipient], domains: frozenset[str] | None) -> list[_Recipient]:
    if domains is None:
        return list(recipients)
    return [recipient for recipient in recipients if recipient.domain in domains]


def list_quarantine(
    ctx: Context, page: PageRequest, domain: str | None = None
) -> Page[QuarantineEntry]:
    """Quarantined messages, newest first; `domain` narrows to one recipient domain."""
    domains = _visible_domains(ctx, domain)
    query = _quarantined()
    if domains is not None:
        query = _with_recipient_in(query, domains)
    query = query.order_by(AmavisMsg.time_num.desc(), AmavisMsg.mail_id)
    result = paginate(ctx.session, query, page)
    messages: list[AmavisMsg] = list(result.items)
    recipients = _recipients(ctx, messages)
    senders = _senders(ctx, messages)
    items = [
        _entry(
            message,
            senders.get(message.sid, ""),
            _shown(recipients.get((message.partition_tag, message.mail_id), []), domains),
        )
        for message in messages
    ]
    return Page(items=items, total=result.total, limit=result.limit, offset=result.offset)


def _mail_id_bytes(mail_id: str) -> bytes:
    if not _MAIL_ID.fullmatch(mail_id):
        raise NotFound(f"quarantined message '{mail_id[:40]}' not found")
    return mail_id.encode("ascii")


def _visible_message(
    ctx: Context, mail_id: str
) -> tuple[AmavisMsg, list[_Recipient], frozenset[str] | None]:
    key = _mail_id_bytes(mail_id)
    domains = _visible_domains(ctx, None)
    query = _quarantined().where(AmavisMsg.mail_id == key)
    if domains is not None:
        query = _with_recipient_in(query, domains)
    message = ctx.session.scalars(query.order_by(AmavisMsg.time_num.desc()).limit(1)).first()
    if message is None:
        raise NotFound(f"quarantined message '{mail_id}' not found")
    recipients = _recipients(ctx, [message]).get((message.partition_tag, message.mail_id), [])
    return message, recipients, domains


def get_quarantined(ctx: Context, mail_id: str) -> QuarantineEntry:
    message, recipients, domains = _visible_message(ctx, mail_id)
    sender = _senders(ctx, [message]).get(message.sid, "")
    return _entry(message, sender, _shown(recipients, domains))


def release_quarantined(
    ctx: Context,
    mail_id: str,
    releaser: Releaser,
    recipient: str | None = None,
    *,
    requested_by: str = "",
) -> ReleaseOutcome:
    """Ask Amavis to deliver the message (to `recipient` only, if given).

    Admin tokens without `recipient` release to every original recipient; a scoped token
    releases to its own domains' recipients only. `requested_by` (who asked, for Amavis's
    log) defaults to the token's id. 503 (Unavailable) from the client when
    Amavis cannot be reached or refuses; then nothing is marked released.
    """
    ctx.principal.require_write()
    message, recipients, domains = _visible_message(ctx, mail_id)
    shown = _shown(recipients, domains)
    targets: list[_Recipient]
    if recipient is not None:
        wanted = str(parse_address(recipient, "recipient", destination=True))
        targets = [r for r in shown if r.address.lower() == wanted]
        if not targets:
            listed = ", ".join(r.address for r in shown) or "none visible to this token"
            raise InvalidInput(
                f"'{wanted}' is not a recipient of message {mail_id}; its recipients are: {listed}",
                field="recipient",
            )
        targets = targets[:1]
    elif domains is None:
        targets = []  # every original recipient
    else:
        targets = shown
    reply = releaser.release(
        _text(message.mail_id),
        _text(message.secret_id),
        partition_tag=message.partition_tag,
        recipients=[r.address for r in targets],
        requested_by=requested_by or f"mailyard-token-{ctx.principal.token_id or 0}",
    )
    released = targets if targets else recipients
    if released:
        ctx.session.execute(
            update(AmavisMsgRcpt)
            .where(
                AmavisMsgRcpt.partition_tag == message.partition_tag,
                AmavisMsgRcpt.mail_id == message.mail_id,
                AmavisMsgRcpt.rseqnum.in_([r.rseqnum for r in released]),
            )
            .values(rs=RELEASED)
            .execution_options(synchronize_session=False)
        )
        ctx.session.commit()
    return ReleaseOutcome(
        mail_id=_text(message.mail_id),
        released_to=tuple(r.address for r in targets),
        amavis_reply=tuple(reply.replies),
    )


def delete_quarantined(ctx: Context, mail_id: str) -> None:
    """Remove the message from the quarantine (rows in quarantine, msgrcpt, msgs).

    A scoped token removes only its domains' recipients; the message itself goes once no
    recipient is left, so another domain's copy is never deleted behind its back.
    """
    ctx.principal.require_write()
    message, recipients, domains = _visible_message(ctx, mail_id)
    shown = _shown(recipients, domains)
    key = (message.partition_tag, message.mail_id)
    session = ctx.session
    if len(shown) < len(recipients):
        session.execute(
            delete(AmavisMsgRcpt)
            .where(
                AmavisMsgRcpt.partition_tag == key[0],
                AmavisMsgRcpt.mail_id == key[1],
                AmavisMsgRcpt.rseqnum.in_([r.rseqnum for r in shown]),
            )
            .execution_options(synchronize_session=False)
        )
    else:
        for statement in (
            delete(AmavisQuarantine).where(
                AmavisQuarantine.partition_tag == key[0], AmavisQuarantine.mail_id == key[1]
            ),
            delete(AmavisMsgRcpt).where(
                AmavisMsgRcpt.partition_tag == key[0], AmavisMsgRcpt.mail_id == key[1]
            ),
            delete(AmavisMsg).where(AmavisMsg.partition_tag == key[0], AmavisMsg.mail_id == key[1]),
        ):
            session.execute(statement.execution_options(synchronize_session=False))
    session.commit()
    session.expunge_all()
