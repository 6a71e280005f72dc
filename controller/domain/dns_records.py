"""What a hosted domain should publish in DNS, as data and as zone-file text.

Choices (each record says why in `purpose`):
- MX 10 -> the mail hostname; one MX, this host is the only one that receives.
- SPF `v=spf1 mx -all`: mail for the domain leaves from the host its MX names. `-all`
  (fail, not softfail): every legitimate sender goes through this server's submission
  ports; with a relayhost the operator must add the relay's SPF include by hand.
- DKIM: one TXT per key that is not deleted (active, published and retired keys: a
  retired key stays so mail it signed earlier still verifies).
- DMARC `p=quarantine` with relaxed alignment and aggregate reports to
  postmaster@<domain>: strict enough that forgeries land in Junk, lenient enough that a
  misconfigured forwarder does not lose mail outright. `p=reject` is the next step once
  the reports look clean; `rua` points at the domain itself, so no external
  authorisation record (RFC 7489 7.1) is needed.
- autoconfig/autodiscover CNAMEs to the hostname (Thunderbird, Outlook), and SRV records
  for RFC 6186 service discovery with RFC 8314's preference for implicit TLS (priority 0)
  over STARTTLS (priority 10). A service switched off is published with target "."
  (RFC 2782: "decidedly not available").
- Host records (A, AAAA, PTR) belong to the zone of the hostname and to the address
  owner's reverse zone; they are given as advice, with placeholders when the address is
  not configured (MAILYARD_PUBLIC_IPV4 / MAILYARD_PUBLIC_IPV6).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from controller.domain.dkim import record_name, txt_value

TTL = 3600
DMARC_POLICY = "quarantine"
MX_PREFERENCE = 10
IPV4_PLACEHOLDER = "203.0.113.10"  # RFC 5737 documentation address
IPV6_PLACEHOLDER = "2001:db8::10"  # RFC 3849 documentation prefix
TXT_CHUNK = 255  # RFC 1035: a character-string holds at most 255 bytes

DOMAIN = "domain"  # in the domain's own zone
HOST = "host"  # in the zone of the mail hostname
REVERSE = "reverse"  # set by whoever owns the address (hosting provider)


@dataclass(frozen=True)
class DnsRecord:
    name: str  # fully qualified, without the trailing dot
    type: str
    value: str  # presentation form; names without trailing dot, TXT unquoted
    purpose: str
    ttl: int = TTL
    section: str = DOMAIN
    placeholder: bool = False  # the value must be replaced before publishing


@dataclass(frozen=True)
class DkimRecordInput:
    selector: str
    algorithm: str
    public_key: str
    state: str


@dataclass(frozen=True)
class Service:
    label: str
    port: int
    priority: int
    what: str


SERVICES = (
    Service("_submissions._tcp", 465, 0, "mail submission with implicit TLS (RFC 8314)"),
    Service("_submission._tcp", 587, 10, "mail submission with STARTTLS (RFC 6186)"),
    Service("_imaps._tcp", 993, 0, "IMAP with implicit TLS (RFC 8314)"),
    Service("_imap._tcp", 143, 10, "IMAP with STARTTLS (RFC 6186)"),
    Service("_pop3s._tcp", 995, 0, "POP3 with implicit TLS (RFC 8314)"),
    Service("_pop3._tcp", 110, 10, "POP3 with STARTTLS (RFC 6186)"),
    Service("_autodiscover._tcp", 443, 0, "Outlook autodiscover"),
)


def _srv_available(service: Service, protocols: Sequence[str]) -> bool:
    if "imap" in service.label:
        return "imap" in protocols
    if "pop3" in service.label:
        return "pop3" in protocols
    return True


def dmarc_value(domain: str) -> str:
    return f"v=DMARC1; p={DMARC_POLICY}; adkim=r; aspf=r; rua=mailto:postmaster@{domain}"


def domain_records(
    domain: str,
    hostname: str,
    dkim_keys: Sequence[DkimRecordInput],
    *,
    protocols: Sequence[str] = ("imap", "pop3"),
    ipv4: str | None = None,
    ipv6: str | None = None,
) -> list[DnsRecord]:
    """Every record for `domain` served by `hostname` (both lowercase A-labels)."""
    records = [
        DnsRecord(
            domain,
            "MX",
            f"{MX_PREFERENCE} {hostname}",
            f"mail for {domain} is delivered to {hostname}",
        ),
        DnsRecord(
            domain,
            "TXT",
            "v=spf1 mx -all",
            "SPF: only the hosts named in the MX may send mail from this domain",
        ),
    ]
    for key in dkim_keys:
        why = {
            "active": "signs outgoing mail now",
            "published": "published ahead of a rotation; activate it once DNS has it",
            "retired": "no longer signs; kept so older signatures verify, delete later",
        }.get(key.state, key.state)
        records.append(
            DnsRecord(
                f"{record_name(key.selector)}.{domain}",
                "TXT",
                txt_value(key.algorithm, key.public_key),
                f"DKIM key '{key.selector}' ({key.algorithm}, {key.state}): {why}",
            )
        )
    records.append(
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            dmarc_value(domain),
            "DMARC: receivers quarantine mail failing both SPF and DKIM alignment and "
            f"send aggregate reports to postmaster@{domain}",
        )
    )
    for label, client in (("autoconfig", "Thunderbird"), ("autodiscover", "Outlook")):
        records.append(
            DnsRecord(
                f"{label}.{domain}",
                "CNAME",
                hostname,
                f"{client} account setup finds the server settings",
            )
        )
    for service in SERVICES:
        available = _srv_available(service, protocols)
        value = f"{service.priority} 1 {service.port} {hostname}" if available else "0 0 0 ."
        purpose = service.what if available else f"{service.what}: switched off here"
        records.append(DnsRecord(f"{service.label}.{domain}", "SRV", value, purpose))
    records.extend(host_records(hostname, ipv4=ipv4, ipv6=ipv6))
    return records


def host_records(hostname: str, *, ipv4: str | None, ipv6: str | None) -> list[DnsRecord]:
    """A/AAAA for the hostname and PTR advice for its addresses."""
    records: list[DnsRecord] = []
    v4 = ipv4 or IPV4_PLACEHOLDER
    records.append(
        DnsRecord(
            hostname,
            "A",
            v4,
            "the mail host's IPv4 address, named by every MX and SRV record"
            + ("" if ipv4 else "; replace the placeholder (set MAILYARD_PUBLIC_IPV4)"),
            section=HOST,
            placeholder=ipv4 is None,
        )
    )
    v6 = ipv6 or IPV6_PLACEHOLDER
    records.append(
        DnsRecord(
            hostname,
            "AAAA",
            v6,
            "the mail host's IPv6 address; publish it only if the host is reachable "
            "over IPv6 on every mail port, and give it a PTR too"
            + ("" if ipv6 else "; replace the placeholder (set MAILYARD_PUBLIC_IPV6)"),
            section=HOST,
            placeholder=ipv6 is None,
        )
    )
    for address, given in ((v4, ipv4), (v6, ipv6)):
        reverse = ipaddress.ip_address(address).reverse_pointer
        records.append(
            DnsRecord(
                reverse,
                "PTR",
                hostname,
                f"reverse DNS: {address} must point back to {hostname} (forward-confirmed), "
                "or many receivers reject the mail; set it at the provider of the address",
                section=REVERSE,
                placeholder=given is None,
            )
        )
    return records


# --- zone-file text ----------------------------------------------------------------------
def txt_strings(value: str) -> str:
    """A TXT value as quoted character-strings of at most 255 bytes each."""
    data = value.encode("utf-8")
    chunks = [data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
    quoted = []
    for chunk in chunks:
        text = chunk.decode("utf-8", errors="strict")
        quoted.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(quoted)


def _absolute(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def zone_value(record: DnsRecord) -> str:
    """The record's data in zone-file syntax: absolute names, quoted TXT strings."""
    if record.type == "TXT":
        return txt_strings(record.value)
    if record.type in {"CNAME", "PTR"}:
        return _absolute(record.value)
    if record.type in {"MX", "SRV"}:
        *numbers, target = record.value.split(" ")
        return " ".join([*numbers, _absolute(target)])
    return record.value


def zone_line(record: DnsRecord) -> str:
    return f"{_absolute(record.name)}\t{record.ttl}\tIN\t{record.type}\t{zone_value(record)}"


def zone_text(domain: str, records: Sequence[DnsRecord]) -> str:
    """Records of the domain's zone as zone-file lines; host and reverse records follow
    as comments, because they belong to other zones."""
    lines = [
        f"; DNS records for {domain}, generated by Mailyard.",
        "; Names are absolute; paste into the zone of the domain or your DNS provider's form.",
        "",
    ]
    for record in records:
        if record.section == DOMAIN:
            lines.append(f"; {record.purpose}")
            lines.append(zone_line(record))
    for section, title in (
        (HOST, "In the zone of the mail hostname (once for all domains)"),
        (REVERSE, "Reverse DNS, set by the provider of the address (once for all domains)"),
    ):
        lines.append("")
        lines.append(f"; --- {title} ---")
        for record in records:
            if record.section == section:
                lines.append(f"; {record.purpose}")
                prefix = "; PLACEHOLDER " if record.placeholder else "; "
                lines.append(prefix + zone_line(record))
    return "\n".join(lines) + "\n"
