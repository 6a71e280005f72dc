"""The controller's view of the compose networks.

Postfix's re-injection listener (port 10025, where Amavis hands filtered mail back) must
trust exactly the internal network: trusting the edge network would trust the Docker
gateway, i.e. every client that reaches a published port. Docker picks the subnet, so
it is read at run time: it is the directly connected route that holds the database's
address (the database is only on the internal network).
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

ROUTES = Path("/proc/net/route")


class NetworkUnknown(RuntimeError):
    """The internal network could not be determined."""


def _little_endian_ipv4(hex_value: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(hex_value, 16).to_bytes(4, "little"))


def connected_networks(routes_text: str) -> list[ipaddress.IPv4Network]:
    """Directly connected IPv4 networks (gateway 0.0.0.0) from /proc/net/route."""
    networks: list[ipaddress.IPv4Network] = []
    for line in routes_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        destination, gateway, mask = fields[1], fields[2], fields[7]
        if int(gateway, 16) != 0 or int(mask, 16) == 0:
            continue
        network = ipaddress.IPv4Network(
            f"{_little_endian_ipv4(destination)}/{_little_endian_ipv4(mask)}", strict=False
        )
        networks.append(network)
    return networks


def network_of(peer_host: str, routes_text: str | None = None) -> str:
    """The connected network (CIDR) through which `peer_host` is reached."""
    try:
        infos = socket.getaddrinfo(peer_host, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NetworkUnknown(f"cannot resolve {peer_host!r}: {exc}") from exc
    addresses = {ipaddress.IPv4Address(str(info[4][0])) for info in infos}
    text = routes_text if routes_text is not None else ROUTES.read_text(encoding="ascii")
    for network in sorted(connected_networks(text), key=lambda n: -n.prefixlen):
        if any(address in network for address in addresses):
            return str(network)
    raise NetworkUnknown(f"no directly connected network holds {peer_host!r} ({addresses})")
