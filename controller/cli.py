"""The `mailyard` admin command; runs inside the controller container.

It calls the same domain layer as the REST API (same validation, same rules) and acts
as an admin: whoever can run it already controls the container and its database.

Every failure ends in one line on standard error that says what to do, never a
traceback: refusals of the domain layer in the command's own words (exit 2, naming
`mailyard` commands, not API paths), an unreachable database (exit 1), anything
unexpected as its type and message (exit 1; MAILYARD_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from controller.domain import domains, mailboxes, tokens
from controller.domain.access import SYSTEM, Context
from controller.domain.pagination import MAX_LIMIT, PageRequest
from controller.errors import InvalidInput, MailyardError
from controller.settings import Settings, get_settings


@contextmanager
def _context(settings: Settings) -> Iterator[Context]:
    from controller import wiring
    from controller.db.session import make_engine, make_session_factory
    from controller.domain.access import Effects
    from controller.services.dkim_keys import KeyStore
    from controller.wiring import credentials_changed_hook, domains_changed_hook, lists_backend

    # Docker and the apply pipeline are reached only when a use case needs them, not for
    # every command.
    def domains_changed() -> None:
        domains_changed_hook(wiring.stack_runtime(settings))()

    def list_created() -> None:
        with _config(settings) as config:
            config.ensure_list_routing()

    effects = Effects(
        credentials_changed=credentials_changed_hook(settings),
        domains_changed=domains_changed,
        list_created=list_created,
        dkim_keys=KeyStore(settings.resolved_dkim_dir()),
        lists=lists_backend(settings),
    )
    engine = make_engine(settings.resolved_database_url())
    try:
        with make_session_factory(engine)() as session:
            yield effects.context(session, SYSTEM)
    finally:
        engine.dispose()


def _read_password(from_stdin: bool, command: str) -> str:
    """The password from standard input (--password-stdin: its first line) or asked
    twice on the terminal. Without a terminal (`docker compose exec -T`, a pipe, cron)
    there is nobody to ask: say how to pass it instead of failing inside getpass.
    `command` is what the user ran, e.g. "mailyard mailbox add a@example.org"."""
    example = f"printf '%s\\n' \"$PASSWORD\" | {command} --password-stdin"
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidInput(f"standard input is empty: write the password to it, e.g. {example}")
        return line.rstrip("\r\n")
    no_terminal = InvalidInput(
        "no terminal to ask for the password: pass it on standard input with "
        f"--password-stdin, e.g. {example}"
    )
    if not sys.stdin.isatty():
        raise no_terminal
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Repeat password: ")
    except EOFError:
        raise no_terminal from None
    if again != first:
        raise InvalidInput("the passwords do not match; run the command again")
    return first


def _print_rows(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(list(rows), indent=2, default=str))
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def _all_pages(fetch: Callable[[PageRequest], Any]) -> list[Any]:
    items: list[Any] = []
    offset = 0
    while True:
        page = fetch(PageRequest(limit=MAX_LIMIT, offset=offset))
        items.extend(page.items)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return items


# --- commands ------------------------------------------------------------------------------
def cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    import uvicorn

    from controller.db.session import make_engine, make_session_factory
    from controller.engine.certificates import CertificateManager
    from controller.engine.mail_status import MailStatusWatch
    from controller.engine.reconcile import start_reconcile_loop
    from controller.engine.startup import prepare
    from controller.main import create_app
    from controller.wiring import (
        config_engine,
        configure_logging,
        credentials_changed_hook,
        flush_queue_hook,
        lists_backend,
        mail_status_check,
    )

    configure_logging(settings)
    engine = make_engine(settings.resolved_database_url())
    sessions = make_session_factory(engine)
    config = config_engine(settings, sessions)
    prepare(settings, engine, sessions, config)
    start_reconcile_loop(config.reconcile, settings.reconcile_interval)
    manager = CertificateManager(settings, config, config.runtime)
    manager.start_scheduler(settings.certificate_check_interval)
    _serve_port_80(settings, manager, config)
    # A held queue (ClamAV without signatures, Amavis or Dovecot down) is logged, and
    # shown by /healthz, GET /api/v1/status and `mailyard status`.
    watch = MailStatusWatch(
        mail_status_check(settings, sessions, config.runtime),
        settings.status_interval,
        on_flowing_again=flush_queue_hook(config.runtime),
    )
    watch.start()
    app = create_app(
        sessions,
        credentials_changed_hook(settings),
        config,
        manager,
        lists_backend=lists_backend(settings),
        mail_status=watch,
    )
    _serve_https(settings, manager, app)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level=settings.log_level)
    return 0


def _serve_https(settings: Settings, manager: Any, app: Any) -> None:
    """The API over HTTPS with the stack's certificate, in a thread. A renewed
    certificate is loaded into the running TLS context: no restart, no dropped client."""
    import threading

    import uvicorn

    from controller.services.certificates import paths
    from controller.services.tls_policy import MANDATORY_TLS12_CIPHERS

    files = paths(settings.certs_dir)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.https_port,
        ssl_certfile=str(files.chain),
        ssl_keyfile=str(files.key),
        # Python's server context allows TLS 1.2 and 1.3 only; uvicorn's default cipher
        # string ("TLSv1") would add the CBC suites back.
        ssl_ciphers=MANDATORY_TLS12_CIPHERS,
        log_level=settings.log_level,
    )

    def reload_certificate() -> None:
        if config.loaded and config.ssl is not None:
            config.ssl.load_cert_chain(str(files.chain), str(files.key))

    manager.on_deployed.append(reload_certificate)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="https", daemon=True).start()


def _serve_port_80(settings: Settings, manager: Any, config: Any) -> None:
    """The ACME challenge responder (and HTTPS redirect) on port 80, in a thread."""
    import threading

    import uvicorn

    from controller.api.responder import responder_app

    app = responder_app(manager.challenges, lambda: config.current_settings().hostname)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.api_host, port=settings.http_port, log_level="warning")
    )
    threading.Thread(target=server.run, name="port-80", daemon=True).start()


def cmd_healthcheck(settings: Settings, _args: argparse.Namespace) -> int:
    url = f"http://127.0.0.1:{settings.api_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """Whether mail flows; exit 0 when it does, 1 when it is held or cannot be told."""
    from controller import wiring
    from controller.db.session import make_engine, make_session_factory

    engine = make_engine(settings.resolved_database_url())
    try:
        check = wiring.mail_status_check(
            settings, make_session_factory(engine), wiring.stack_runtime(settings)
        )
        status = check()
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(status.view(), indent=2))
        return 0 if status.state == "flowing" else 1
    print(status.summary)
    for problem in status.problems[1:]:
        print(problem)
    for service in status.services:
        state = "ok" if service.healthy == service.replicas else service.detail
        print(f"  {service.service:<9} {service.healthy}/{service.replicas} healthy  {state}")
    if status.queue is not None:
        print(f"  queue     {status.queue.messages} message(s), {status.queue.deferred} deferred")
    return 0 if status.state == "flowing" else 1


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from controller.db.grants import apply_service_grants
    from controller.db.migrate import upgrade_to_head
    from controller.db.session import make_engine
    from controller.services.registry import database_accounts

    engine = make_engine(settings.resolved_database_url())
    upgrade_to_head(engine)
    apply_service_grants(engine, settings.db_name, database_accounts())
    print("database schema is up to date")
    return 0


def cmd_admin_token(settings: Settings, _args: argparse.Namespace) -> int:
    from controller.engine.startup import ADMIN_TOKEN_FILE
    from controller.services.secret_files import read_secret

    token_file = settings.state_dir / ADMIN_TOKEN_FILE
    if not token_file.exists():
        print(
            "no first admin token yet: the controller creates it at its first start",
            file=sys.stderr,
        )
        return 1
    with _context(settings) as ctx:
        if not tokens.bootstrap_token_is_active(ctx.session):
            print(
                "the first admin token was revoked; create another with "
                "`mailyard token create NAME --admin`",
                file=sys.stderr,
            )
            return 1
    print(read_secret(token_file))
    return 0


def cmd_domain_add(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        domain = domains.create_domain(ctx, args.name, args.description)
        print(f"added domain {domain.name}")
    return 0


def cmd_domain_list(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        rows = [
            {"name": d.name, "active": d.active, "description": d.description}
            for d in _all_pages(lambda page: domains.list_domains(ctx, page))
        ]
    _print_rows(rows, args.json)
    return 0


def cmd_domain_delete(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        domains.delete_domain(ctx, args.name, cascade=args.cascade)
    print(f"deleted domain {args.name}")
    return 0


def cmd_mailbox_add(settings: Settings, args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin, f"mailyard mailbox add {args.address}")
    with _context(settings) as ctx:
        mailbox = mailboxes.create_mailbox(ctx, args.address, password, args.quota_mb)
        print(f"added mailbox {mailbox.address} (quota {mailbox.quota_mb} MiB)")
    return 0


def cmd_mailbox_list(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        rows = [
            {"address": m.address, "quota_mb": m.quota_mb, "active": m.active}
            for m in _all_pages(lambda page: mailboxes.list_mailboxes(ctx, page, args.domain))
        ]
    _print_rows(rows, args.json)
    return 0


def cmd_mailbox_passwd(settings: Settings, args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin, f"mailyard mailbox passwd {args.address}")
    with _context(settings) as ctx:
        mailboxes.update_mailbox(ctx, args.address, mailboxes.MailboxChanges(password=password))
    print(f"changed the password of {args.address}")
    return 0


def cmd_mailbox_delete(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        mailboxes.delete_mailbox(ctx, args.address)
    print(f"deleted mailbox {args.address} (its maildir is kept on the mail volume)")
    return 0


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        issued = tokens.create_token(
            ctx,
            args.name,
            is_admin=args.admin,
            read_only=args.read_only,
            domains=args.domain,
            expires_in_days=args.expires_in_days,
            networks=args.network,
        )
    print(issued.secret)
    print("store this token now: it is not shown again", file=sys.stderr)
    return 0


def _when(moment: datetime | None, never: str) -> str:
    return f"{moment:%Y-%m-%d %H:%M}Z" if moment is not None else never


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "admin": t.is_admin,
                "read_only": t.read_only,
                "domains": ",".join(tokens.scope_names(t)) or "-",
                "expires": _when(t.expires_at, "never"),
                "networks": ",".join(tokens.token_networks(t)) or "any",
                "last_used": _when(t.last_used_at, "never"),
                "last_used_from": t.last_used_from or "-",
            }
            for t in _all_pages(lambda page: tokens.list_tokens(ctx, page))
        ]
    _print_rows(rows, args.json)
    return 0


@contextmanager
def _config(settings: Settings) -> Iterator[Any]:
    from controller.db.session import make_engine, make_session_factory
    from controller.wiring import config_engine

    engine = make_engine(settings.resolved_database_url())
    try:
        yield config_engine(settings, make_session_factory(engine))
    finally:
        engine.dispose()


def _setting_value(raw: str) -> Any:
    """NAME=VALUE on the command line: JSON when it parses (numbers, true, lists),
    a comma-separated list when it has commas, otherwise a string."""
    try:
        return json.loads(raw)
    except ValueError:
        if "," in raw:
            return [item.strip() for item in raw.split(",") if item.strip()]
        return raw


def _print_apply(record: dict[str, Any] | None) -> None:
    if record is None:
        print("nothing changed")
        return
    print(f"apply {record['id']}: {record['status']} in {record['duration_ms']} ms")
    for change in record["changes"]:
        print(f"  {change['name']}: {change['old']!r} -> {change['new']!r}")
    for warning in record["warnings"]:
        print(f"  warning: {warning}")


def cmd_settings_show(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain.mail_settings import public_values

    with _config(settings) as config:
        values = public_values(config.current_settings())
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        for name, value in values.items():
            print(f"{name} = {json.dumps(value)}")
    return 0


def cmd_settings_set(settings: Settings, args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    for assignment in args.assignments:
        name, separator, raw = assignment.partition("=")
        if not separator:
            raise InvalidInput(
                f"'{assignment}' is not NAME=VALUE: write each change as NAME=VALUE, "
                "e.g. mailyard settings set mynetworks=127.0.0.0/8"
            )
        values[name.strip()] = _setting_value(raw)
    for name in args.reset:
        values[name] = None
    with _config(settings) as config:
        _print_apply(config.change_settings(values, replace=False, actor=SYSTEM.name))
    return 0


def cmd_config_plan(settings: Settings, args: argparse.Namespace) -> int:
    with _config(settings) as config:
        plan = config.plan()
    if args.json:
        print(json.dumps(plan, indent=2))
        return 0
    for name, service in plan["services"].items():
        state = "changes pending" if service["changed"] else "up to date"
        print(
            f"{name}: running {service['running_release']}, desired "
            f"{service['desired_release']} ({state})"
        )
        for container, release in service["replicas"].items():
            print(f"  {container} runs {release}")
        for problem in service["drift"]:
            print(f"  drift: {problem}")
        if service["diff"]:
            print(service["diff"], end="")
    return 0


def cmd_config_reconcile(settings: Settings, _args: argparse.Namespace) -> int:
    with _config(settings) as config:
        _print_apply(config.reconcile(trigger="mailyard command"))
    return 0


def cmd_config_applies(settings: Settings, args: argparse.Namespace) -> int:
    with _config(settings) as config:
        page = config.list_applies(PageRequest(limit=args.limit))
    rows = [
        {
            "id": item["id"],
            "started_at": item["started_at"],
            "actor": item["actor"],
            "status": item["status"],
            "ms": item["duration_ms"],
            "changes": ",".join(change["name"] for change in item["changes"]) or "-",
            "error": (item["error"] or "-")[:80],
        }
        for item in page.items
    ]
    _print_rows(rows, args.json)
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    with _context(settings) as ctx:
        tokens.revoke_token(ctx, args.id)
    print(f"revoked token {args.id}")
    return 0


# --- failed-login blocks (Dovecot's auth policy server; controller/domain/blocks.py) -------
def cmd_blocks_list(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import blocks

    with _context(settings) as ctx:
        rows = [
            {
                "address": b.address,
                "failures": b.failures,
                "blocked_at": b.blocked_at,
                "blocked_until": b.blocked_until,
                "last_protocol": b.last_protocol or "-",
                "last_username": b.last_username or "-",
            }
            for b in _all_pages(lambda page: blocks.list_blocks(ctx, page))
        ]
    _print_rows(rows, args.json)
    return 0


def cmd_blocks_lift(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import blocks

    with _context(settings) as ctx:
        lifted = blocks.lift_block(ctx, args.address)
    print(f"lifted the block of {lifted}")
    return 0


def _add_blocks_commands(commands: Any) -> None:
    block = commands.add_parser(
        "blocks", help="client addresses blocked after failed logins"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = block.add_parser("list", help="addresses blocked now (times in UTC)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_blocks_list)
    lift = block.add_parser("lift", help="lift a block and forget the address's failures")
    lift.add_argument("address", help="IPv4 address, or IPv6 address or its /64")
    lift.set_defaults(handler=cmd_blocks_lift)


# --- mailing lists (kept by Mailman; see controller/domain/lists.py) -----------------------
def _lists_backend(settings: Settings) -> Any:
    from controller.domain.lists import require_backend
    from controller.wiring import lists_backend

    return require_backend(lists_backend(settings))


def cmd_list_create(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import lists

    name, at, domain = args.address.rpartition("@")
    if not at or not name or not domain:
        raise InvalidInput(
            f"'{args.address}' is not a list address: give one such as team@example.org"
        )
    values = lists.ListValues(
        name=name,
        display_name=args.display_name,
        subject_prefix=args.subject_prefix,
        posting=args.posting,
        archiving=args.archiving,
        description=args.description,
    )
    backend = _lists_backend(settings)
    with _context(settings) as ctx:
        created = lists.create_list(ctx, backend, domain, values)
    # Postfix routes list addresses before create_list returns (the use case's own step).
    print(f"created mailing list {created.address} (posting: {created.posting})")
    return 0


def cmd_list_list(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import lists

    backend = _lists_backend(settings)
    with _context(settings) as ctx:
        rows = [
            {
                "address": item.address,
                "display_name": item.display_name,
                "posting": item.posting,
                "archiving": item.archiving,
                "members": item.member_count,
            }
            for item in _all_pages(lambda page: lists.list_lists(ctx, backend, args.domain, page))
        ]
    _print_rows(rows, args.json)
    return 0


def cmd_list_delete(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import lists

    backend = _lists_backend(settings)
    with _context(settings) as ctx:
        lists.delete_list(ctx, backend, args.address)
    print(f"deleted mailing list {args.address}")
    return 0


def cmd_list_add_member(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import lists

    backend = _lists_backend(settings)
    with _context(settings) as ctx:
        member = lists.add_member(
            ctx,
            backend,
            args.address,
            args.email,
            role=args.role,
            display_name=args.display_name,
            delivery=False if args.no_delivery else None,
        )
    print(f"added {member.email} to {args.address} as {member.role}")
    return 0


def cmd_list_remove_member(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import lists

    backend = _lists_backend(settings)
    with _context(settings) as ctx:
        lists.remove_member(ctx, backend, args.address, args.email, args.role)
    print(f"removed {args.email} ({args.role}) from {args.address}")
    return 0


def cmd_list_members(settings: Settings, args: argparse.Namespace) -> int:
    from controller.domain import lists

    backend = _lists_backend(settings)
    with _context(settings) as ctx:
        rows = [
            {
                "email": m.email,
                "role": m.role,
                "delivery": "-" if m.delivery is None else ("on" if m.delivery else "off"),
                "display_name": m.display_name,
            }
            for m in _all_pages(
                lambda page: lists.list_members(ctx, backend, args.address, page, args.role)
            )
        ]
    _print_rows(rows, args.json)
    return 0


def _add_list_commands(commands: Any) -> None:
    mailing = commands.add_parser("list", help="mailing lists (kept by Mailman)").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = mailing.add_parser("create", help="create a mailing list, e.g. team@example.org")
    create.add_argument("address")
    create.add_argument("--display-name", default=None, help="default: the list's name")
    create.add_argument("--subject-prefix", default=None, help='default: "[<name>] "')
    create.add_argument(
        "--posting",
        choices=["members", "anyone", "moderated"],
        default="members",
        help="who may post without a moderator (default: members)",
    )
    create.add_argument("--archiving", action="store_true", help="archive policy public")
    create.add_argument("--description", default="")
    create.set_defaults(handler=cmd_list_create)
    listing = mailing.add_parser("list", help="the mailing lists of a domain")
    listing.add_argument("domain")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list_list)
    delete = mailing.add_parser("delete", help="delete a mailing list with its members")
    delete.add_argument("address")
    delete.set_defaults(handler=cmd_list_delete)
    add = mailing.add_parser("add-member", help="add a member, owner or moderator at once")
    add.add_argument("address")
    add.add_argument("email")
    add.add_argument("--role", choices=["member", "owner", "moderator"], default="member")
    add.add_argument("--display-name", default="")
    add.add_argument("--no-delivery", action="store_true", help="member without delivery")
    add.set_defaults(handler=cmd_list_add_member)
    remove = mailing.add_parser("remove-member", help="remove a member, owner or moderator")
    remove.add_argument("address")
    remove.add_argument("email")
    remove.add_argument("--role", choices=["member", "owner", "moderator"], default="member")
    remove.set_defaults(handler=cmd_list_remove_member)
    members = mailing.add_parser("members", help="owners, moderators and members of a list")
    members.add_argument("address")
    members.add_argument("--role", choices=["member", "owner", "moderator"], default=None)
    members.add_argument("--json", action="store_true")
    members.set_defaults(handler=cmd_list_members)


def _add_token_commands(commands: Any) -> None:
    token = commands.add_parser("token", help="API tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = token.add_parser("create", help="create a token and print it once")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true")
    create.add_argument("--read-only", action="store_true")
    create.add_argument(
        "--domain",
        action="append",
        default=[],
        help="a hosted domain the token is limited to; repeat for several",
    )
    create.add_argument(
        "--expires-in-days",
        type=int,
        metavar="N",
        help="the token stops working N days from now (1-3650); default: never",
    )
    create.add_argument(
        "--network",
        action="append",
        default=[],
        metavar="CIDR",
        help="a client network the token may be used from, e.g. 203.0.113.0/24; "
        "repeat for several; default: any address",
    )
    create.set_defaults(handler=cmd_token_create)
    listing = token.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=cmd_token_revoke)


def _add_settings_commands(commands: Any) -> None:
    setting = commands.add_parser("settings", help="mail settings").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    show = setting.add_parser("show", help="every setting's value (secrets masked)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_settings_show)
    change = setting.add_parser(
        "set", help="change settings and apply them (validated, health-gated, rolled back)"
    )
    change.add_argument("assignments", nargs="*", metavar="NAME=VALUE")
    change.add_argument(
        "--reset",
        action="append",
        default=[],
        metavar="NAME",
        help="return a setting to its default",
    )
    change.set_defaults(handler=cmd_settings_set)

    config = commands.add_parser("config", help="rendered configuration").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    plan = config.add_parser("plan", help="diff between running and desired configuration")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(handler=cmd_config_plan)
    config.add_parser(
        "reconcile", help="bring every container to the desired release"
    ).set_defaults(handler=cmd_config_reconcile)
    applies = config.add_parser("applies", help="recent applies, newest first")
    applies.add_argument("--limit", type=int, default=20)
    applies.add_argument("--json", action="store_true")
    applies.set_defaults(handler=cmd_config_applies)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailyard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("serve", help="migrate, render and serve the API").set_defaults(
        handler=cmd_serve
    )
    commands.add_parser("healthcheck", help="exit 0 if the API answers").set_defaults(
        handler=cmd_healthcheck
    )
    status = commands.add_parser(
        "status", help="whether mail flows; if it is held, why and what to do"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(
        handler=cmd_migrate
    )
    commands.add_parser("admin-token", help="print the first admin API token").set_defaults(
        handler=cmd_admin_token
    )

    domain = commands.add_parser("domain", help="hosted domains").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = domain.add_parser("add", help="add a domain")
    add.add_argument("name")
    add.add_argument("--description", default="")
    add.set_defaults(handler=cmd_domain_add)
    listing = domain.add_parser("list", help="list domains")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_domain_list)
    delete = domain.add_parser("delete", help="delete a domain")
    delete.add_argument("name")
    delete.add_argument("--cascade", action="store_true", help="also its mailboxes and aliases")
    delete.set_defaults(handler=cmd_domain_delete)

    mailbox = commands.add_parser("mailbox", help="mailboxes").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = mailbox.add_parser("add", help="add a mailbox (asks for the password)")
    add.add_argument("address")
    add.add_argument(
        "--quota-mb", type=int, default=None, help="MiB, 0 = unlimited (default: setting)"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=cmd_mailbox_add)
    listing = mailbox.add_parser("list", help="list mailboxes")
    listing.add_argument("--domain")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_mailbox_list)
    passwd = mailbox.add_parser("passwd", help="change a mailbox password")
    passwd.add_argument("address")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=cmd_mailbox_passwd)
    delete = mailbox.add_parser("delete", help="delete a mailbox (mail stays on disk)")
    delete.add_argument("address")
    delete.set_defaults(handler=cmd_mailbox_delete)

    _add_token_commands(commands)
    for add_commands in (_add_settings_commands, _add_list_commands, _add_blocks_commands):
        add_commands(commands)
    return parser


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _database_unreachable(exc: Exception) -> str:
    reason = _one_line(str(getattr(exc, "orig", None) or exc).splitlines()[0], 160)
    return (
        f"cannot use the database ({reason}); check that the db service is up "
        "(docker compose ps db) and retry"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; see the module's docstring for what failures look like."""
    from sqlalchemy.exc import DBAPIError

    args = build_parser().parse_args(argv)
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(get_settings(), args)
    except MailyardError as exc:
        print(f"mailyard: {_one_line(exc.text('cli'), 2000)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mailyard: interrupted", file=sys.stderr)
        return 130
    except DBAPIError as exc:
        if os.environ.get("MAILYARD_DEBUG"):
            raise
        print(f"mailyard: {_database_unreachable(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get("MAILYARD_DEBUG"):
            raise
        print(
            f"mailyard: unexpected error ({type(exc).__name__}: {_one_line(str(exc), 200)}); "
            "run it again with MAILYARD_DEBUG=1 for the details and report them",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
