#!/usr/bin/python3
"""Checks that Postfix could open every TCP listener of a staged release.

    mailyard-postfix-listen-check RELEASE_DIR

Prints "ERROR <text>" for each listener it could not open and exits 1, else exits 0.

`postfix check` accepts a master.cf service on an address the container does not have;
`postfix reload` then makes the master exit (fatal: bind: Cannot assign requested
address) and every session in progress is cut. So before a release goes live, each
listener's address is bound here, on port 0 (any free port: the check never competes
with the running master for its ports), and each port that the live configuration does
not already listen on is bound too, to find another process holding it.

The listeners are read from Postfix itself (`postconf -M`, `postconf -h inet_interfaces`),
never by parsing master.cf here.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Iterator

LIVE = "/etc/mailyard/active"


def postconf(release: str, *args: str) -> str:
    # The release directory was checked by validate.sh; no shell is involved.
    return subprocess.run(  # noqa: S603
        ["/usr/sbin/postconf", "-c", release, *args], capture_output=True, text=True, check=True
    ).stdout


def inet_services(release: str) -> Iterator[str]:
    """The service field of each inet service: "port", "name" or "host:port"."""
    for line in postconf(release, "-M").splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "inet":
            yield fields[0]


def interfaces(release: str) -> list[str]:
    value = postconf(release, "-h", "inet_interfaces").replace(",", " ").split()
    if value in ([], ["all"]):
        return ["0.0.0.0"]  # noqa: S104 - what Postfix binds for "all"
    if value == ["loopback-only"]:
        return ["127.0.0.1"]
    return value


def port_number(service: str, text: str) -> int:
    if text.isdigit():
        number = int(text)
        if not 0 < number < 65536:
            raise ValueError(f"{service}: port {number} is out of range (1 to 65535)")
        return number
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise ValueError(
            f"{service}: '{text}' is neither a port nor a known service name"
        ) from None


def endpoints(release: str) -> Iterator[tuple[str, str, int]]:
    """(service, IPv4 address, port) for every socket the master would open."""
    for service in inet_services(release):
        host, _, port_text = service.rpartition(":")
        port = port_number(service, port_text)
        for name in [host] if host else interfaces(release):
            try:
                infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
            except socket.gaierror:
                raise ValueError(
                    f"{service}: '{name}' is neither an IPv4 address nor a name this "
                    "container can resolve"
                ) from None
            for address in sorted({str(info[4][0]) for info in infos}):
                yield service, address, port


def own_addresses() -> str:
    found = subprocess.run(["/usr/bin/hostname", "-I"], capture_output=True, text=True, check=False)
    return ", ".join(["127.0.0.1", *found.stdout.split()])


def bind_error(address: str, port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc.errno
    return None


def live_ports() -> set[int]:
    try:
        return {port for _service, _address, port in endpoints(LIVE)}
    except (ValueError, subprocess.CalledProcessError):
        return set()


def problems(release: str) -> list[str]:
    try:
        wanted = list(endpoints(release))
    except ValueError as exc:
        return [str(exc)]
    held = live_ports()
    missing: dict[str, list[str]] = {}
    found = []
    for service, address, port in wanted:
        if address in missing or bind_error(address, 0) == errno.EADDRNOTAVAIL:
            missing.setdefault(address, []).append(service)
        elif port not in held and bind_error(address, port) == errno.EADDRINUSE:
            found.append(f"{service}: port {port} on {address} is already in use")
    for address, services in missing.items():
        found.append(
            f"Postfix cannot listen on {address} ({', '.join(services)}): this container has "
            f"no such address (it has {own_addresses()}); choose one of those or leave the "
            "listen address empty"
        )
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print("ERROR usage: mailyard-postfix-listen-check RELEASE_DIR")
        return 1
    found = problems(sys.argv[1])
    for text in found:
        print(f"ERROR {text}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
