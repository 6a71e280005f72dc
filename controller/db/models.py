"""SQLAlchemy 2 models: the truth that Postfix and Dovecot read live through SQL.

Column names and types are a contract with the SQL queries in templates/postfix/sql and
templates/dovecot; a change here needs a migration and a look at those queries.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CHAR,
    VARBINARY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints keep migrations reproducible across MariaDB and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Domain(Base):
    """A domain whose mailboxes and aliases this server hosts (Postfix virtual mailbox domain)."""

    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="", server_default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    mailboxes: Mapped[list[Mailbox]] = relationship(back_populates="domain")
    aliases: Mapped[list[Alias]] = relationship(back_populates="domain")
    alias_domains: Mapped[list[AliasDomain]] = relationship(back_populates="target_domain")


class Mailbox(Base):
    """A mailbox: a login for IMAP/POP3/submission and a maildir that receives mail."""

    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"))
    local_part: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(254), unique=True)
    # Dovecot scheme-prefixed hash, e.g. {ARGON2ID}$argon2id$v=19$...
    password_hash: Mapped[str] = mapped_column(String(255))
    quota_mb: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Relative to the mail volume. Unique per mailbox ever created, so a mailbox deleted
    # and created again never sees the previous owner's mail.
    maildir: Mapped[str] = mapped_column(String(400), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    domain: Mapped[Domain] = relationship(back_populates="mailboxes")


class Alias(Base):
    """An address that forwards to one or more destinations; `@domain` is a catch-all."""

    __tablename__ = "aliases"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"))
    address: Mapped[str] = mapped_column(String(254), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    domain: Mapped[Domain] = relationship(back_populates="aliases")
    destinations: Mapped[list[AliasDestination]] = relationship(
        back_populates="alias",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="AliasDestination.position",
    )


class AliasDestination(Base):
    """One destination of an alias; Postfix joins the rows of one alias with commas."""

    __tablename__ = "alias_destinations"
    __table_args__ = (UniqueConstraint("alias_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alias_id: Mapped[int] = mapped_column(ForeignKey("aliases.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254))
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    alias: Mapped[Alias] = relationship(back_populates="destinations")


class AliasDomain(Base):
    """A domain that mirrors a hosted domain: user@alias.example reaches user@target."""

    __tablename__ = "alias_domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    target_domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    target_domain: Mapped[Domain] = relationship(back_populates="alias_domains")


class RelayDomain(Base):
    """A domain this server is backup MX for: mail is queued and forwarded (seed 003)."""

    __tablename__ = "relay_domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    # Postfix next hop ("[host]:port"); NULL means deliver by MX lookup.
    nexthop: Mapped[str | None] = mapped_column(String(270), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    """A bearer token: admin or limited to domains, read-only or read-write, optionally
    with an expiry and a list of client networks it may be used from.

    Only a SHA-256 of the secret part is stored; the secret has 256 bits of entropy, so a
    slow hash would add nothing but latency.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The client address of that last use, as the controller saw it (canonical text).
    last_used_from: Mapped[str | None] = mapped_column(String(45), nullable=True)
    # NULL: never expires. UTC, like every time here.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Client networks the token may be used from: canonical CIDRs joined by commas,
    # validated by controller.domain.tokens (at most 32); empty: any address.
    networks: Mapped[str] = mapped_column(String(2000), default="", server_default="")

    domains: Mapped[list[ApiTokenDomain]] = relationship(
        back_populates="token", cascade="all, delete-orphan", passive_deletes=True
    )
    relay_domains: Mapped[list[ApiTokenRelayDomain]] = relationship(
        back_populates="token", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiTokenDomain(Base):
    """A hosted domain a scoped token may act on, bound to the domain's row, not its
    name: deleting the domain deletes this row (ON DELETE CASCADE), so a domain created
    again under the same name is outside every token made before."""

    __tablename__ = "api_token_domains"

    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    domain_id: Mapped[int] = mapped_column(
        ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True
    )

    token: Mapped[ApiToken] = relationship(back_populates="domains")
    # No back-reference on Domain: the database's cascade removes these rows, and the
    # ORM must not try to null the key of rows it never loaded.
    domain: Mapped[Domain] = relationship(lazy="joined")


class ApiTokenRelayDomain(Base):
    """A relay domain a scoped token may read, bound to its row like ApiTokenDomain."""

    __tablename__ = "api_token_relay_domains"

    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    relay_domain_id: Mapped[int] = mapped_column(
        ForeignKey("relay_domains.id", ondelete="CASCADE"), primary_key=True
    )

    token: Mapped[ApiToken] = relationship(back_populates="relay_domains")
    relay_domain: Mapped[RelayDomain] = relationship(lazy="joined")


class SystemState(Base):
    """Small facts the controller must remember across restarts (e.g. first-start done)."""

    __tablename__ = "system_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class Setting(Base):
    """A mail setting that differs from its default (controller.domain.mail_settings).

    Values are JSON. Secret settings (the relayhost password) are stored here too, in the
    controller's database only: the Postfix and Dovecot database users have no grant on
    this table, and the API never returns them.
    """

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ConfigApply(Base):
    """One attempt to bring the services' configuration to a new desired state.

    Written before anything goes live (status `in_progress`), so a controller killed
    half-way finds it at its next start and finishes or undoes it.
    """

    __tablename__ = "config_applies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Who asked: a token's key id, "mailyard command", "reconcile" or "recovery".
    actor: Mapped[str] = mapped_column(String(100))
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True
    )
    trigger: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    # Setting changes as [{"name", "old", "new"}], secrets shown as "********".
    changes: Mapped[str] = mapped_column(Text, default="[]")
    # Stored settings before the change, secrets included: what a rollback restores.
    # Never returned by the API.
    previous_settings: Mapped[str] = mapped_column(Text, default="{}")
    # Per service: from/to release, per replica steps with timings; JSON.
    services: Mapped[str] = mapped_column(Text, default="{}")
    warnings: Mapped[str] = mapped_column(Text, default="[]")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


# --- content filter (migration 0003; docs/design/filter-chain.md) -------------------------
FILTER_SPAM_ACTIONS = ("quarantine", "reject", "deliver")
FILTER_VIRUS_ACTIONS = ("quarantine", "reject")


class DomainFilterPolicy(Base):
    """A domain's content-filter policy, when it differs from the defaults.

    Amavis reads it live through the view `amavis_policy` (made in migration 0003), which
    supplies the defaults for domains without a row; see docs/design/filter-chain.md.
    """

    __tablename__ = "domain_filter_policies"
    __table_args__ = (
        CheckConstraint(
            "spam_action IN ('quarantine', 'reject', 'deliver')",
            name="ck_domain_filter_policies_spam_action",
        ),
        CheckConstraint(
            "virus_action IN ('quarantine', 'reject')",
            name="ck_domain_filter_policies_virus_action",
        ),
        CheckConstraint(
            "spam_action_score >= spam_tag_score",
            name="ck_domain_filter_policies_score_order",
        ),
    )

    domain_id: Mapped[int] = mapped_column(
        ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    spam_tag_score: Mapped[float] = mapped_column(Float, default=5.0, server_default="5")
    spam_action_score: Mapped[float] = mapped_column(Float, default=12.0, server_default="12")
    spam_action: Mapped[str] = mapped_column(
        String(16), default="quarantine", server_default="quarantine"
    )
    virus_action: Mapped[str] = mapped_column(
        String(16), default="quarantine", server_default="quarantine"
    )
    # Comma-separated names from controller.domain.filter_policies.BANNED_CATEGORIES.
    banned_categories: Mapped[str] = mapped_column(
        String(255), default="executables", server_default="executables"
    )
    spam_to_junk: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


# Amavis's own storage tables (amavisd-new README.sql-mysql layout). Amavis writes them
# (quarantine only); the controller lists, releases and deletes. Octet strings are
# VARBINARY/BLOB, counters unsigned on MariaDB; SQLite (unit tests) gets plain integers.
_UNSIGNED_INT = Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql", "mariadb")
_UNSIGNED_BIGINT = BigInteger().with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
_MADDR_ID = (
    BigInteger()
    .with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")
    .with_variant(Integer(), "sqlite")
)


def _octets(length: int) -> VARBINARY:
    # SQLite (unit tests) has no VARBINARY; BLOB keeps the same bytes semantics.
    return VARBINARY(length).with_variant(LargeBinary(), "sqlite")


class AmavisMaddr(Base):
    """One row per mail address Amavis has seen (senders and recipients)."""

    __tablename__ = "maddr"
    __table_args__ = (UniqueConstraint("partition_tag", "email"),)

    partition_tag: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    id: Mapped[int] = mapped_column(_MADDR_ID, primary_key=True, autoincrement=True)
    email: Mapped[bytes] = mapped_column(_octets(255))
    # Domain part with its labels reversed: user@mail.example.org -> org.example.mail.
    domain: Mapped[str] = mapped_column(String(255))


class AmavisMsg(Base):
    """One row per quarantined message (`$sql_store_info_for_all_msgs = 0`)."""

    __tablename__ = "msgs"

    partition_tag: Mapped[int] = mapped_column(
        Integer, primary_key=True, default=0, server_default="0", autoincrement=False
    )
    mail_id: Mapped[bytes] = mapped_column(_octets(16), primary_key=True)
    secret_id: Mapped[bytes | None] = mapped_column(_octets(16), server_default="")
    am_id: Mapped[str] = mapped_column(String(20))
    time_num: Mapped[int] = mapped_column(_UNSIGNED_INT, index=True)
    time_iso: Mapped[str] = mapped_column(CHAR(16))
    sid: Mapped[int] = mapped_column(_UNSIGNED_BIGINT, index=True)
    policy: Mapped[str | None] = mapped_column(String(255), server_default="")
    client_addr: Mapped[str | None] = mapped_column(String(255), server_default="")
    size: Mapped[int] = mapped_column(_UNSIGNED_INT)
    originating: Mapped[str] = mapped_column(CHAR(1), server_default=" ")
    # V virus, B banned, U unchecked, S spam (kill level), Y spammy (tag2), M bad MIME,
    # H bad header, O oversized, T MTA error, C clean; NULL while being processed.
    content: Mapped[str | None] = mapped_column(CHAR(1))
    # ' ' none, F file, Z zipfile, B bsmtp, Q SQL, M/L mailbox.
    quar_type: Mapped[str | None] = mapped_column(CHAR(1))
    quar_loc: Mapped[bytes | None] = mapped_column(_octets(255), server_default="")
    dsn_sent: Mapped[str | None] = mapped_column(CHAR(1))
    spam_level: Mapped[float | None] = mapped_column(Float)
    message_id: Mapped[str | None] = mapped_column(String(255), server_default="", index=True)
    from_addr: Mapped[str | None] = mapped_column(String(255), server_default="")
    subject: Mapped[str | None] = mapped_column(String(255), server_default="")
    host: Mapped[str] = mapped_column(String(255))


class AmavisMsgRcpt(Base):
    """One row per recipient of a stored message."""

    __tablename__ = "msgrcpt"

    partition_tag: Mapped[int] = mapped_column(
        Integer, primary_key=True, default=0, server_default="0", autoincrement=False
    )
    mail_id: Mapped[bytes] = mapped_column(_octets(16), primary_key=True, index=True)
    rseqnum: Mapped[int] = mapped_column(
        Integer, primary_key=True, default=0, server_default="0", autoincrement=False
    )
    rid: Mapped[int] = mapped_column(_UNSIGNED_BIGINT, index=True)
    is_local: Mapped[str] = mapped_column(CHAR(1), server_default=" ")
    content: Mapped[str] = mapped_column(CHAR(1), server_default=" ")
    # Delivery status P pass, R reject, B bounce, D discard, T tempfail.
    ds: Mapped[str] = mapped_column(CHAR(1))
    # Release status, ' ' from Amavis; the controller sets R when it released the copy.
    rs: Mapped[str] = mapped_column(CHAR(1))
    bl: Mapped[str | None] = mapped_column(CHAR(1), server_default=" ")
    wl: Mapped[str | None] = mapped_column(CHAR(1), server_default=" ")
    bspam_level: Mapped[float | None] = mapped_column(Float)
    smtp_resp: Mapped[str | None] = mapped_column(String(255), server_default="")


class AmavisQuarantine(Base):
    """The quarantined message itself, in chunks of octets."""

    __tablename__ = "quarantine"

    partition_tag: Mapped[int] = mapped_column(
        Integer, primary_key=True, default=0, server_default="0", autoincrement=False
    )
    mail_id: Mapped[bytes] = mapped_column(_octets(16), primary_key=True)
    chunk_ind: Mapped[int] = mapped_column(_UNSIGNED_INT, primary_key=True, autoincrement=False)
    mail_text: Mapped[bytes] = mapped_column(LargeBinary)


class DkimKey(Base):
    """A DKIM key pair of a hosted domain (docs/design/filter-chain.md, table `dkim_keys`).

    Only the public half is stored (`public_key`: the DNS `p=` value). The private key is a
    file, `<dkim dir>/<domain>/<selector>.key`, readable by OpenDKIM's group. States:
    `active` signs (at most one per domain), `published` is in DNS but does not sign yet
    (a rotation waiting for DNS), `retired` no longer signs but stays in DNS so mail
    signed with it still verifies.
    """

    __tablename__ = "dkim_keys"
    __table_args__ = (UniqueConstraint("domain_id", "selector"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    selector: Mapped[str] = mapped_column(String(63))
    algorithm: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    domain: Mapped[Domain] = relationship()


class LoginBlock(Base):
    """Failed logins from one client address, and its block (migration 0006).

    Written by the auth policy server in the Dovecot container (images/dovecot/
    auth_policy.py, database user mailyard_dovecot), which Dovecot asks about every login
    (IMAP, POP3, ManageSieve, SMTP AUTH); read and deleted (a block lifted) by the
    controller. `address` is an IPv4 address, or an IPv6 /64 network: one IPv6 client
    usually owns the whole /64. Failures are counted in a fixed window that starts at the
    first failure; times are UTC, from the database's clock (replicas share it).
    """

    __tablename__ = "login_blocks"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    window_started_at: Mapped[datetime] = mapped_column(DateTime)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    blocked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    # The last user name tried (truncated) and the protocol (imap, pop3, sieve, smtp):
    # what an administrator needs to tell an attack from a client with an old password.
    last_username: Mapped[str] = mapped_column(String(64), default="", server_default="")
    last_protocol: Mapped[str] = mapped_column(String(16), default="", server_default="")
