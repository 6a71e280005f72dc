"""GET /domains/{name}/dns: what to publish, as JSON and as zone-file text."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from controller.domain import dkim, dns_records

API = "/api/v1"
Problem = Callable[..., dict[str, Any]]


def _by_name_and_type(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["name"], r["type"]): r for r in records}


def test_every_record_a_domain_needs(make: Any, admin: TestClient) -> None:
    make.domain("a.example")
    response = admin.get(f"{API}/domains/a.example/dns")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["domain"] == "a.example"
    assert body["hostname"] == "mail.example.com"
    records = _by_name_and_type(body["records"])
    assert records[("a.example", "MX")]["value"] == "10 mail.example.com"
    assert records[("a.example", "TXT")]["value"] == "v=spf1 mx -all"
    assert records[("_dmarc.a.example", "TXT")]["value"] == (
        "v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@a.example"
    )
    assert records[("autoconfig.a.example", "CNAME")]["value"] == "mail.example.com"
    assert records[("autodiscover.a.example", "CNAME")]["value"] == "mail.example.com"
    srv = {name: r["value"] for (name, kind), r in records.items() if kind == "SRV"}
    assert srv == {
        "_submissions._tcp.a.example": "0 1 465 mail.example.com",
        "_submission._tcp.a.example": "10 1 587 mail.example.com",
        "_imaps._tcp.a.example": "0 1 993 mail.example.com",
        "_imap._tcp.a.example": "10 1 143 mail.example.com",
        "_pop3s._tcp.a.example": "0 1 995 mail.example.com",
        "_pop3._tcp.a.example": "10 1 110 mail.example.com",
        "_autodiscover._tcp.a.example": "0 1 443 mail.example.com",
    }
    dkim_records = [r for r in body["records"] if "._domainkey." in r["name"]]
    assert len(dkim_records) == 1
    assert dkim_records[0]["value"].startswith("v=DKIM1; k=rsa; p=")
    for record in body["records"]:
        assert record["ttl"] > 0
        assert record["purpose"]
    # Host advice: placeholders (no public address configured), marked as such.
    a_record = records[("mail.example.com", "A")]
    assert a_record["section"] == "host"
    assert a_record["placeholder"] is True
    ptr = [r for r in body["records"] if r["type"] == "PTR"]
    assert {r["section"] for r in ptr} == {"reverse"}
    assert all(r["value"] == "mail.example.com" for r in ptr)


def test_known_addresses_replace_the_placeholders() -> None:
    records = dns_records.host_records("mail.example.com", ipv4="192.0.2.25", ipv6=None)
    a, aaaa, ptr4, ptr6 = records
    assert (a.type, a.value, a.placeholder) == ("A", "192.0.2.25", False)
    assert (aaaa.type, aaaa.placeholder) == ("AAAA", True)
    assert ptr4.name == "25.2.0.192.in-addr.arpa"
    assert ptr4.value == "mail.example.com"
    assert not ptr4.placeholder
    assert ptr6.name.endswith(".ip6.arpa")


def test_switched_off_services_are_published_as_unavailable() -> None:
    records = dns_records.domain_records("a.example", "mail.example.com", [], protocols=["imap"])
    srv = {r.name: r.value for r in records if r.type == "SRV"}
    assert srv["_pop3s._tcp.a.example"] == "0 0 0 ."
    assert srv["_imaps._tcp.a.example"] == "0 1 993 mail.example.com"


def test_zone_text_is_valid_zone_file_syntax(make: Any, admin: TestClient) -> None:
    make.domain("a.example")
    admin.post(f"{API}/domains/a.example/dkim/rotate", json={"algorithm": "ed25519"})
    for response in (
        admin.get(f"{API}/domains/a.example/dns?format=zone"),
        admin.get(f"{API}/domains/a.example/dns", headers={"Accept": "text/plain"}),
    ):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        zone = response.text
        assert "a.example.\t3600\tIN\tMX\t10 mail.example.com." in zone
        assert 'a.example.\t3600\tIN\tTXT\t"v=spf1 mx -all"' in zone
        assert "_submissions._tcp.a.example.\t3600\tIN\tSRV\t0 1 465 mail.example.com." in zone
        assert "autoconfig.a.example.\t3600\tIN\tCNAME\tmail.example.com." in zone
        # Records of other zones are advice, commented out.
        assert "; PLACEHOLDER mail.example.com.\t3600\tIN\tA\t203.0.113.10" in zone
        dkim_lines = [line for line in zone.splitlines() if "._domainkey." in line]
        assert len(dkim_lines) == 2
        for line in dkim_lines:
            assert not line.startswith(";")
            strings = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
            assert strings
            assert all(len(s.encode()) <= 255 for s in strings)
    # JSON stays the default, also for a browser-like Accept header.
    response = admin.get(f"{API}/domains/a.example/dns", headers={"Accept": "*/*"})
    assert response.headers["content-type"].startswith("application/json")


def test_long_txt_values_are_split_into_255_byte_strings() -> None:
    material = dkim.generate_key("rsa-4096")
    value = dkim.txt_value("rsa-4096", material.public_key)
    assert len(value) > 600
    quoted = dns_records.txt_strings(value)
    strings = re.findall(r'"([^"]*)"', quoted)
    assert len(strings) == -(-len(value) // 255)
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == value
    assert dns_records.txt_strings('say "hi"') == '"say \\"hi\\""'


def test_bad_format_and_unknown_domain(make: Any, admin: TestClient, problem: Problem) -> None:
    make.domain("a.example")
    problem(admin.get(f"{API}/domains/a.example/dns?format=bind"), 422)
    problem(admin.get(f"{API}/domains/nowhere.example/dns"), 404)
