"""controller/services/network.py: the internal network from the routing table."""

from __future__ import annotations

import pytest

from controller.services.network import NetworkUnknown, connected_networks, network_of

# /proc/net/route of a controller on two compose networks: edge 172.18.0.0/16 (default
# route via 172.18.0.1) and internal 172.19.0.0/16. Addresses are little-endian hex.
ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000013AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_connected_networks_skip_the_default_route() -> None:
    assert [str(n) for n in connected_networks(ROUTES)] == ["172.19.0.0/16", "172.18.0.0/16"]


def test_network_of_a_peer_is_the_connected_route_that_holds_it() -> None:
    assert network_of("172.19.0.5", ROUTES) == "172.19.0.0/16"


def test_a_peer_behind_a_gateway_is_not_on_a_connected_network() -> None:
    with pytest.raises(NetworkUnknown, match="no directly connected network"):
        network_of("10.1.2.3", ROUTES)


def test_an_unresolvable_peer_is_reported() -> None:
    with pytest.raises(NetworkUnknown, match="cannot resolve"):
        network_of("no-such-host.invalid", ROUTES)
