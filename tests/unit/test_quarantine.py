"""The SQL quarantine (rows as Amavis writes them) and releases through AM.PDP.

The AM.PDP client is tested against a real socket server that answers like Amavis, so the
bytes on the wire and the reply parsing are what is checked; the real Amavis is exercised
by the stack tests.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from controller.engine.apply import ConfigEngine
from controller.errors import Unavailable
from controller.services.amavis_pdp import (
    AmavisPdpClient,
    ProtocolError,
    decode_value,
    encode_request,
    encode_value,
    parse_reply,
)
from controller.settings import Settings

API = "/api/v1"
Problem = Callable[..., dict[str, Any]]
OK_REPLY = b"setreply=250 2.0.0 Ok,%20id=rel-AbCdEf,%20from%20MTA([postfix]:10025)\r\n\r\n"


# --- a tiny Amavis ---------------------------------------------------------------------------
@dataclass
class FakeAmavis:
    port: int
    reply: bytes = OK_REPLY
    requests: list[bytes] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            line = self.rfile.readline()
            if not line:
                break
            data += line
        self.server.fake.requests.append(data)
        self.wfile.write(self.server.fake.reply)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeAmavis


@pytest.fixture
def amavis() -> Iterator[FakeAmavis]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeAmavis(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.fake
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the protocol ----------------------------------------------------------------------------
def test_the_release_request_on_the_wire(amavis: FakeAmavis) -> None:
    client = AmavisPdpClient("127.0.0.1", amavis.port, timeout=5)
    result = client.release(
        "bV3x-Zkq2Zr+",
        "s3cr3t-ID",
        partition_tag=0,
        recipients=["alice@a.example", "bob=x@b.example"],
        requested_by="mailyard-api-token-7",
    )
    assert amavis.requests == [
        b"request=release\r\n"
        b"mail_id=bV3x-Zkq2Zr+\r\n"
        b"secret_id=s3cr3t-ID\r\n"
        b"quar_type=Q\r\n"
        b"partition_tag=0\r\n"
        b"requested_by=mailyard-api-token-7\r\n"
        b"recipient=<alice@a.example>\r\n"
        b"recipient=<bob%3Dx@b.example>\r\n"
        b"\r\n"
    ]
    assert result.replies == ("250 2.0.0 Ok, id=rel-AbCdEf, from MTA([postfix]:10025)",)


def test_without_recipients_no_recipient_lines_are_sent(amavis: FakeAmavis) -> None:
    AmavisPdpClient("127.0.0.1", amavis.port, timeout=5).release("abc", "def")
    assert amavis.requests == [
        b"request=release\r\nmail_id=abc\r\nsecret_id=def\r\nquar_type=Q\r\n\r\n"
    ]


@pytest.mark.parametrize(
    "reply",
    [
        b"setreply=450 4.5.0 Failure:%20Can't%20open%20quarantine\r\n\r\n",
        b"setreply=550 5.7.1 Not%20authorized\r\nlog_id=r1\r\n\r\n",
        b"setreply=250 2.0.0 Ok\r\nsetreply=450 4.4.1 No%20route\r\n\r\n",
        b"setreply=garbage\r\n\r\n",
    ],
)
def test_4xx_and_5xx_replies_are_errors(amavis: FakeAmavis, reply: bytes) -> None:
    amavis.reply = reply
    with pytest.raises(Unavailable) as caught:
        AmavisPdpClient("127.0.0.1", amavis.port, timeout=5).release("abc", "def")
    assert "refused to release abc" in caught.value.message
    # The decoded reply is part of the message a person reads.
    assert "%20" not in caught.value.message


def test_a_reply_without_setreply_is_an_error(amavis: FakeAmavis) -> None:
    amavis.reply = b"version_server=2\r\n\r\n"
    with pytest.raises(Unavailable, match="gave no answer"):
        AmavisPdpClient("127.0.0.1", amavis.port, timeout=5).release("abc", "def")


def test_a_malformed_reply_is_an_error(amavis: FakeAmavis) -> None:
    amavis.reply = b"this is not AM.PDP\r\n\r\n"
    with pytest.raises(Unavailable, match="answered unexpectedly"):
        AmavisPdpClient("127.0.0.1", amavis.port, timeout=5).release("abc", "def")


def test_a_server_that_is_down_is_unavailable() -> None:
    client = AmavisPdpClient("127.0.0.1", _closed_port(), timeout=5)
    with pytest.raises(Unavailable, match="cannot be reached"):
        client.release("abc", "def")


@pytest.mark.parametrize("value", ["a\r\nrequest=delete", "a\nb", "a\rb", "a\x00b"])
def test_line_breaks_never_reach_the_wire(amavis: FakeAmavis, value: str) -> None:
    client = AmavisPdpClient("127.0.0.1", amavis.port, timeout=5)
    with pytest.raises(ProtocolError):
        client.release(value, "def")
    with pytest.raises(ProtocolError):
        client.release("abc", "def", recipients=[value])
    assert amavis.requests == []


def test_attribute_names_are_plain_words() -> None:
    for name in ("Request", "a=b", "", "a b", "a\n"):
        with pytest.raises(ProtocolError):
            encode_request([(name, "x")])


def test_values_are_percent_encoded_and_decoded() -> None:
    assert encode_value("a b%c=d\té") == "a%20b%25c%3Dd%09%C3%A9"
    assert decode_value("a%20b%25c%3Dd%09%C3%A9") == "a b%c=d\té"
    assert decode_value("100%zz") == "100%zz"  # not an escape: kept as it is
    assert parse_reply(b"setreply=250 2.0.0 Ok,%20id=x\nlog_id=y\n\nignored=1\n") == [
        ("setreply", "250 2.0.0 Ok, id=x"),
        ("log_id", "y"),
    ]


# --- rows as Amavis writes them --------------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    """Insert quarantine rows the way Amavis does (maddr, msgs, msgrcpt, quarantine)."""

    engine: Engine

    def address(self, email: str) -> int:
        domain = ".".join(reversed(email.rpartition("@")[2].split(".")))
        with self.engine.begin() as connection:
            found = connection.scalar(
                text("SELECT id FROM maddr WHERE partition_tag = 0 AND email = :email"),
                {"email": email.encode()},
            )
            if found is not None:
                return int(found)
            connection.execute(
                text("INSERT INTO maddr (partition_tag, email, domain) VALUES (0, :e, :d)"),
                {"e": email.encode(), "d": domain},
            )
            return int(
                connection.scalar(
                    text("SELECT id FROM maddr WHERE email = :email"), {"email": email.encode()}
                )
            )

    def message(
        self,
        mail_id: str,
        recipients: list[str],
        *,
        content: str = "S",
        sender: str = "spammer@elsewhere.example",
        time_num: int = 1_790_000_000,
        subject: str = "Cheap watches",
        spam_level: float | None = 25.5,
        quar_type: str = "Q",
    ) -> None:
        sid = self.address(sender)
        rids = [self.address(recipient) for recipient in recipients]
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO msgs (partition_tag, mail_id, secret_id, am_id, time_num, "
                    "time_iso, sid, policy, client_addr, size, originating, content, "
                    "quar_type, quar_loc, dsn_sent, spam_level, message_id, from_addr, "
                    "subject, host) VALUES (0, :mail_id, :secret, '12345-01', :time_num, "
                    "'20260922T120000Z', :sid, 'MYNETS', '192.0.2.1', 2048, 'N', :content, "
                    ":quar_type, :mail_id, 'N', :spam_level, '<m@x>', :from_addr, :subject, "
                    "'amavis')"
                ),
                {
                    "mail_id": mail_id.encode(),
                    "secret": f"secret-{mail_id}".encode()[:16],
                    "time_num": time_num,
                    "sid": sid,
                    "content": content,
                    "quar_type": quar_type,
                    "spam_level": spam_level,
                    "from_addr": f"Sender <{sender}>",
                    "subject": subject,
                },
            )
            for rseqnum, rid in enumerate(rids, start=1):
                connection.execute(
                    text(
                        "INSERT INTO msgrcpt (partition_tag, mail_id, rseqnum, rid, is_local, "
                        "content, ds, rs, bl, wl, bspam_level, smtp_resp) VALUES (0, :mail_id, "
                        ":rseqnum, :rid, 'Y', :content, 'D', ' ', ' ', ' ', 25.5, "
                        "'250 2.7.0 Ok, discarded')"
                    ),
                    {
                        "mail_id": mail_id.encode(),
                        "rseqnum": rseqnum,
                        "rid": rid,
                        "content": content,
                    },
                )
            for chunk in (1, 2):
                connection.execute(
                    text(
                        "INSERT INTO quarantine (partition_tag, mail_id, chunk_ind, mail_text) "
                        "VALUES (0, :mail_id, :chunk, :body)"
                    ),
                    {"mail_id": mail_id.encode(), "chunk": chunk, "body": b"Subject: x\r\n\r\n"},
                )

    def count(self, table: str, mail_id: str) -> int:
        assert table in {"msgs", "msgrcpt", "quarantine"}
        with self.engine.connect() as connection:
            return int(
                connection.scalar(
                    text(f"SELECT COUNT(*) FROM {table} WHERE mail_id = :m"),  # noqa: S608 - fixed table names
                    {"m": mail_id.encode()},
                )
                or 0
            )

    def release_status(self, mail_id: str) -> list[str]:
        with self.engine.connect() as connection:
            return list(
                connection.scalars(
                    text("SELECT rs FROM msgrcpt WHERE mail_id = :m ORDER BY rseqnum"),
                    {"m": mail_id.encode()},
                )
            )


@dataclass
class World:
    admin: TestClient
    scoped: TestClient  # read-write, a.example only
    reader: TestClient  # read-only admin
    stored: Stored


@pytest.fixture
def settings(settings: Settings, amavis: FakeAmavis) -> Settings:
    """The controller's settings, pointing AM.PDP at the fake Amavis (process settings
    are frozen: a copy, which the app and the engine here are built from)."""
    return settings.model_copy(
        update={"amavis_pdp_host": "127.0.0.1", "amavis_pdp_port": amavis.port}
    )


@pytest.fixture
def world(
    make: Any,
    admin: TestClient,
    client_for: Callable[[str], TestClient],
    engine: Engine,
) -> World:
    make.domain("a.example")
    make.domain("b.example")
    tokens = {}
    for key, body in {
        "scoped": {"name": "scoped", "domains": ["a.example"]},
        "reader": {"name": "reader", "admin": True, "read_only": True},
    }.items():
        response = admin.post(f"{API}/tokens", json=body)
        assert response.status_code == 201, response.text
        tokens[key] = client_for(response.json()["token"])
    stored = Stored(engine)
    stored.message("spamOnlyForA", ["alice@a.example"], time_num=1_790_000_300)
    stored.message(
        "virusForBoth",
        ["bob@b.example", "alice@a.example"],
        content="V",
        spam_level=None,
        subject="Invoice",
        time_num=1_790_000_200,
    )
    stored.message("bannedForB-1", ["bob@b.example"], content="B", time_num=1_790_000_100)
    # Not in the SQL quarantine, or not a quarantine kind: never listed.
    stored.message("cleanMessage", ["alice@a.example"], content="C", time_num=1_790_000_400)
    stored.message("fileQuarant", ["alice@a.example"], quar_type="F", time_num=1_790_000_500)
    return World(admin=admin, scoped=tokens["scoped"], reader=tokens["reader"], stored=stored)


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["mail_id"] for item in response.json()["items"]]


# --- listing ---------------------------------------------------------------------------------
def test_the_admin_lists_every_quarantined_message_newest_first(world: World) -> None:
    response = world.admin.get(f"{API}/quarantine")
    assert _ids(response) == ["spamOnlyForA", "virusForBoth", "bannedForB-1"]
    first, second, third = response.json()["items"]
    assert first == {
        "mail_id": "spamOnlyForA",
        "received_at": "2026-09-21T14:18:20Z",
        "content": "spam",
        "sender": "spammer@elsewhere.example",
        "recipients": [{"address": "alice@a.example", "released": False}],
        "subject": "Cheap watches",
        "from_header": "Sender <spammer@elsewhere.example>",
        "message_id": "<m@x>",
        "spam_score": 25.5,
        "size": 2048,
    }
    assert second["content"] == "virus"
    assert second["spam_score"] is None
    assert [r["address"] for r in second["recipients"]] == ["bob@b.example", "alice@a.example"]
    assert third["content"] == "banned"
    assert response.json()["total"] == 3


def test_listing_pages(world: World) -> None:
    response = world.admin.get(f"{API}/quarantine", params={"limit": 2, "offset": 1})
    assert _ids(response) == ["virusForBoth", "bannedForB-1"]
    assert response.json()["total"] == 3
    assert response.json()["limit"] == 2


def test_the_domain_filter(world: World, problem: Problem) -> None:
    response = world.admin.get(f"{API}/quarantine", params={"domain": "b.example"})
    assert _ids(response) == ["virusForBoth", "bannedForB-1"]
    # Only that domain's recipients are shown.
    assert response.json()["items"][0]["recipients"] == [
        {"address": "bob@b.example", "released": False}
    ]
    problem(world.admin.get(f"{API}/quarantine", params={"domain": "not a domain"}), 422)


def test_a_scoped_token_sees_its_domains_recipients_only(world: World, problem: Problem) -> None:
    response = world.scoped.get(f"{API}/quarantine")
    assert _ids(response) == ["spamOnlyForA", "virusForBoth"]
    assert response.json()["total"] == 2
    assert response.json()["items"][1]["recipients"] == [
        {"address": "alice@a.example", "released": False}
    ]
    problem(world.scoped.get(f"{API}/quarantine", params={"domain": "b.example"}), 404)
    problem(world.scoped.get(f"{API}/quarantine/bannedForB-1"), 404)
    one = world.scoped.get(f"{API}/quarantine/virusForBoth")
    assert one.status_code == 200
    assert [r["address"] for r in one.json()["recipients"]] == ["alice@a.example"]


def test_unknown_and_malformed_ids_are_404(world: World, problem: Problem) -> None:
    for mail_id in ("doesNotExist", "cleanMessage", "fileQuarant", "a%27b", "x" * 40):
        problem(world.admin.get(f"{API}/quarantine/{mail_id}"), 404)
        problem(world.admin.post(f"{API}/quarantine/{mail_id}/release"), 404)
        problem(world.admin.delete(f"{API}/quarantine/{mail_id}"), 404)


# --- release ---------------------------------------------------------------------------------
def test_the_admin_releases_to_every_recipient(world: World, amavis: FakeAmavis) -> None:
    response = world.admin.post(f"{API}/quarantine/virusForBoth/release")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "mail_id": "virusForBoth",
        "released_to": [],
        "amavis_reply": ["250 2.0.0 Ok, id=rel-AbCdEf, from MTA([postfix]:10025)"],
    }
    (request,) = amavis.requests
    assert request.startswith(
        b"request=release\r\nmail_id=virusForBoth\r\nsecret_id=secret-virusForB\r\n"
        b"quar_type=Q\r\npartition_tag=0\r\nrequested_by=mailyard-token-"
    )
    assert request.endswith(b"@mail.example.com\r\n\r\n")
    assert b"recipient=" not in request
    assert world.stored.release_status("virusForBoth") == ["R", "R"]
    listed = world.admin.get(f"{API}/quarantine/virusForBoth").json()["recipients"]
    assert all(recipient["released"] for recipient in listed)


def test_release_to_one_recipient(world: World, amavis: FakeAmavis, problem: Problem) -> None:
    response = world.admin.post(
        f"{API}/quarantine/virusForBoth/release", json={"recipient": "Alice@A.example"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["released_to"] == ["alice@a.example"]
    assert amavis.requests[0].endswith(b"recipient=<alice@a.example>\r\n\r\n")
    assert world.stored.release_status("virusForBoth") == [" ", "R"]
    body = problem(
        world.admin.post(
            f"{API}/quarantine/virusForBoth/release", json={"recipient": "carol@a.example"}
        ),
        422,
        detail_contains="is not a recipient",
    )
    assert body["field"] == "recipient"
    assert len(amavis.requests) == 1


def test_a_scoped_token_releases_to_its_recipients_only(
    world: World, amavis: FakeAmavis, problem: Problem
) -> None:
    response = world.scoped.post(f"{API}/quarantine/virusForBoth/release")
    assert response.status_code == 200, response.text
    assert response.json()["released_to"] == ["alice@a.example"]
    assert amavis.requests[0].endswith(b"recipient=<alice@a.example>\r\n\r\n")
    assert world.stored.release_status("virusForBoth") == [" ", "R"]
    # Naming the other domain's recipient reveals nothing and sends nothing.
    problem(
        world.scoped.post(
            f"{API}/quarantine/virusForBoth/release", json={"recipient": "bob@b.example"}
        ),
        422,
    )
    problem(world.scoped.post(f"{API}/quarantine/bannedForB-1/release"), 404)
    assert len(amavis.requests) == 1


def test_read_only_tokens_cannot_release_or_delete(
    world: World, amavis: FakeAmavis, problem: Problem
) -> None:
    assert world.reader.get(f"{API}/quarantine").status_code == 200
    problem(world.reader.post(f"{API}/quarantine/virusForBoth/release"), 403)
    problem(world.reader.delete(f"{API}/quarantine/virusForBoth"), 403)
    assert amavis.requests == []
    assert world.stored.count("msgs", "virusForBoth") == 1


def test_amavis_refusing_is_503_and_nothing_is_marked(
    world: World, amavis: FakeAmavis, problem: Problem
) -> None:
    amavis.reply = b"setreply=450 4.5.0 Failure:%20mail_id%20not%20found\r\n\r\n"
    problem(
        world.admin.post(f"{API}/quarantine/virusForBoth/release"),
        503,
        detail_contains="mail_id not found",
    )
    assert world.stored.release_status("virusForBoth") == [" ", " "]


def test_amavis_down_is_503(
    world: World, config_engine: ConfigEngine, settings: Settings, problem: Problem
) -> None:
    config_engine.settings = settings.model_copy(update={"amavis_pdp_port": _closed_port()})
    problem(
        world.admin.post(f"{API}/quarantine/virusForBoth/release"),
        503,
        detail_contains="cannot be reached",
    )
    assert world.stored.release_status("virusForBoth") == [" ", " "]


# --- delete ----------------------------------------------------------------------------------
def test_the_admin_deletes_every_row_of_a_message(world: World) -> None:
    assert world.admin.delete(f"{API}/quarantine/virusForBoth").status_code == 204
    for table in ("msgs", "msgrcpt", "quarantine"):
        assert world.stored.count(table, "virusForBoth") == 0
    assert world.stored.count("msgs", "spamOnlyForA") == 1
    assert _ids(world.admin.get(f"{API}/quarantine")) == ["spamOnlyForA", "bannedForB-1"]


def test_a_scoped_token_deletes_its_recipients_only(world: World) -> None:
    assert world.scoped.delete(f"{API}/quarantine/virusForBoth").status_code == 204
    # Gone for a.example, still there for b.example.
    assert _ids(world.scoped.get(f"{API}/quarantine")) == ["spamOnlyForA"]
    assert world.stored.count("msgs", "virusForBoth") == 1
    assert world.stored.count("msgrcpt", "virusForBoth") == 1
    assert world.stored.count("quarantine", "virusForBoth") == 2
    listed = world.admin.get(f"{API}/quarantine/virusForBoth").json()["recipients"]
    assert [r["address"] for r in listed] == ["bob@b.example"]
    # A message only for its own domains goes entirely.
    assert world.scoped.delete(f"{API}/quarantine/spamOnlyForA").status_code == 204
    for table in ("msgs", "msgrcpt", "quarantine"):
        assert world.stored.count(table, "spamOnlyForA") == 0
