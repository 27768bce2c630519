"""A key's IP allow-list: its entries (addresses and CIDR networks) checked and put in canonical
form when the key is created or changed, parsed once into integer masks that live with the key
record in the authenticator's cache, and matched against the client's address per request."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network

from xrouter_router.domain.errors import AddressNotAllowed, InvalidRequest

MAX_ALLOWED_IPS = 100
_PARAM = "allowed_ips"
# An entry longer than this is no address ("ffff:...:ffff/128" is 43 characters).
_MAX_ENTRY = 64
_NOT_AN_ADDRESS = "not an IP address or CIDR network"


def _unmapped(net: IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
    """An IPv4-mapped IPv6 network (::ffff:a.b.c.d/96 and longer) as the IPv4 network it is."""
    if isinstance(net, IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return IPv4Network((mapped, net.prefixlen - 96))
    return net


def parse_entry(text: str) -> IPv4Network | IPv6Network:
    """One entry as a network (an address is a network of one); ValueError saying what the
    entry is instead ("is not an IP address or CIDR network")."""
    entry = text.strip()
    if not entry or len(entry) > _MAX_ENTRY or "%" in entry:
        raise ValueError(_NOT_AN_ADDRESS)
    try:
        if "/" in entry:
            # strict: "10.0.0.5/8" is refused rather than silently widened to 10.0.0.0/8.
            return _unmapped(ipaddress.ip_network(entry, strict=True))
        return _unmapped(ipaddress.ip_network(ipaddress.ip_address(entry)))
    except ValueError as exc:
        if "host bits set" not in str(exc):
            raise ValueError(_NOT_AN_ADDRESS) from None
        network = ipaddress.ip_network(entry, strict=False)
        raise ValueError(f"a network with host bits set (the network is {network})") from None


def _client(address: str) -> tuple[int, int] | None:
    """The IP version and integer value of a client's address; an IPv4-mapped IPv6 address is
    the IPv4 one, an IPv6 zone id is dropped; None when it is no address. inet_pton parses
    (without any I/O) in about a tenth of the time ipaddress takes: this runs per request."""
    try:
        if ":" not in address:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address.partition("%")[0]),
                               "big")
    except (OSError, ValueError):
        return None
    return (4, value & 0xFFFFFFFF) if value >> 32 == 0xFFFF else (6, value)


def _text(net: IPv4Network | IPv6Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


class AllowList:
    """The entries in canonical form (addresses without a prefix, IPv4-mapped IPv6 entries as
    IPv4, duplicates dropped) and, per IP version, (mask, network) integer pairs. Empty: any
    address. Equal when the entries are."""

    __slots__ = ("_v4", "_v6", "entries")

    def __init__(self, networks: Iterable[IPv4Network | IPv6Network] = ()) -> None:
        unique = list(dict.fromkeys(networks))
        self.entries: tuple[str, ...] = tuple(_text(n) for n in unique)
        self._v4 = tuple((int(n.netmask), int(n.network_address)) for n in unique
                         if n.version == 4)
        self._v6 = tuple((int(n.netmask), int(n.network_address)) for n in unique
                         if n.version == 6)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """The allow-list of these entries; InvalidRequest naming the first bad one."""
        items = list(entries)
        if len(items) > MAX_ALLOWED_IPS:
            raise InvalidRequest(f"{_PARAM} may hold at most {MAX_ALLOWED_IPS} entries; "
                                 f"got {len(items)}", param=_PARAM)
        networks = []
        for item in items:
            try:
                networks.append(parse_entry(item))
            except ValueError as exc:
                raise InvalidRequest(f"{_PARAM}: {item[:_MAX_ENTRY]!r} is {exc}",
                                     param=_PARAM) from None
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AllowList) and other.entries == self.entries

    def __hash__(self) -> int:
        return hash(self.entries)

    def __repr__(self) -> str:
        return f"AllowList({list(self.entries)!r})"

    def admits(self, address: str) -> bool:
        """Whether the client at `address` (text, as the gateway saw it) is on the list. An
        address that does not parse (or is empty: unknown) is not."""
        parsed = _client(address)
        if parsed is None:
            return False
        version, value = parsed
        # A plain loop: any() over a generator costs about four times as much per request.
        for mask, network in self._v4 if version == 4 else self._v6:  # noqa: SIM110
            if value & mask == network:
                return True
        return False

    def check(self, address: str) -> None:
        """Raises AddressNotAllowed unless the list is empty or admits `address`."""
        if self.entries and not self.admits(address):
            shown = address if address and len(address) <= _MAX_ENTRY else "an unknown address"
            raise AddressNotAllowed(f"This API key may not be used from {shown}: the address "
                                    "is not allowed for this key")


EVERYWHERE = AllowList()
