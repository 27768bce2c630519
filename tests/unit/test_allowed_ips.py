"""A key's IP allow-list: entries checked and put in canonical form, addresses matched (IPv4,
IPv6, CIDR, IPv4-mapped IPv6), and the authenticator refusing other and unknown addresses with
the documented 403 before anything else about the key is told."""

from __future__ import annotations

import pytest

from xrouter_common.apikeys import generate
from xrouter_router.domain.addresses import MAX_ALLOWED_IPS, AllowList
from xrouter_router.domain.auth import KeyAuthenticator
from xrouter_router.domain.errors import (
    AddressNotAllowed,
    ErrorKind,
    Forbidden,
    InvalidRequest,
    Unauthenticated,
)
from xrouter_router.domain.keys import ApiKey, key_hash


@pytest.mark.parametrize(("entries", "canonical"), [
    (["192.0.2.7"], ("192.0.2.7",)),
    (["10.0.0.0/8", " 192.0.2.7 "], ("10.0.0.0/8", "192.0.2.7")),
    (["192.0.2.7/32"], ("192.0.2.7",)),
    (["2001:DB8:0:0::1"], ("2001:db8::1",)),
    (["2001:db8::/32", "::1/128"], ("2001:db8::/32", "::1")),
    # IPv4-mapped IPv6 entries are the IPv4 addresses and networks they name.
    (["::ffff:192.0.2.7"], ("192.0.2.7",)),
    (["::ffff:10.0.0.0/104"], ("10.0.0.0/8",)),
    (["::ffff:0:0/96"], ("0.0.0.0/0",)),
    (["10.0.0.0/8", "10.0.0.0/8", "::ffff:10.0.0.0/104"], ("10.0.0.0/8",)),
    ([], ()),
])
def test_entries_are_kept_in_canonical_form(entries: list[str], canonical: tuple[str, ...]) -> None:
    assert AllowList.parse(entries).entries == canonical


@pytest.mark.parametrize(("entries", "address", "admitted"), [
    (["192.0.2.7"], "192.0.2.7", True),
    (["192.0.2.7"], "192.0.2.8", False),
    (["10.0.0.0/8"], "10.255.255.255", True),
    (["10.0.0.0/8"], "11.0.0.0", False),
    (["198.51.100.0/24", "203.0.113.9"], "203.0.113.9", True),
    (["0.0.0.0/0"], "8.8.8.8", True),
    (["2001:db8::1"], "2001:db8::1", True),
    (["2001:db8::1"], "2001:0db8:0000::0001", True),
    (["2001:db8::1"], "2001:db8::2", False),
    (["2001:db8::/32"], "2001:db8:ffff::1", True),
    (["2001:db8::/32"], "2001:db9::1", False),
    (["fe80::/10"], "fe80::1%eth0", True),  # a link-local peer with its zone
    # A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d: it is that IPv4 address.
    (["192.0.2.0/24"], "::ffff:192.0.2.7", True),
    (["192.0.2.0/24"], "::ffff:198.51.100.7", False),
    (["::ffff:192.0.2.7"], "192.0.2.7", True),
    # The families never mix: 0.0.0.0/0 is no IPv6 address, ::/0 no IPv4 one.
    (["0.0.0.0/0"], "::1", False),
    (["::/0"], "127.0.0.1", False),
    (["::/0"], "::ffff:127.0.0.1", False),
    # An address that is unknown or not an address is on no list.
    (["0.0.0.0/0", "::/0"], "", False),
    (["0.0.0.0/0", "::/0"], "unknown", False),
    (["0.0.0.0/0", "::/0"], "192.0.2.7:8080", False),
    (["0.0.0.0/0", "::/0"], "[::1]", False),
    (["0.0.0.0/0", "::/0"], "192.0.2.7 ", False),
    (["0.0.0.0/0", "::/0"], "192.0.2.7\x00", False),
    (["0.0.0.0/0", "::/0"], "1.2.3", False),
    (["0.0.0.0/0", "::/0"], "0x7f.0.0.1", False),
    (["0.0.0.0/0", "::/0"], "\xff", False),
])
def test_addresses_are_matched(entries: list[str], address: str, admitted: bool) -> None:
    assert AllowList.parse(entries).admits(address) is admitted


@pytest.mark.parametrize(("entry", "message"), [
    ("192.0.2.300", "allowed_ips: '192.0.2.300' is not an IP address or CIDR network"),
    ("example.com", "allowed_ips: 'example.com' is not an IP address or CIDR network"),
    ("", "allowed_ips: '' is not an IP address or CIDR network"),
    ("10.0.0.0/33", "allowed_ips: '10.0.0.0/33' is not an IP address or CIDR network"),
    ("fe80::1%eth0", "allowed_ips: 'fe80::1%eth0' is not an IP address or CIDR network"),
    ("10.1.2.3/8", "allowed_ips: '10.1.2.3/8' is a network with host bits set "
                   "(the network is 10.0.0.0/8)"),
    ("2001:db8::1/32", "allowed_ips: '2001:db8::1/32' is a network with host bits set "
                       "(the network is 2001:db8::/32)"),
])
def test_a_malformed_entry_is_a_400_naming_the_field_and_the_value(entry: str,
                                                                   message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        AllowList.parse(["192.0.2.1", entry])
    assert (info.value.message, info.value.param) == (message, "allowed_ips")


def test_the_list_holds_at_most_100_entries() -> None:
    hundred = [f"10.0.{i}.0/24" for i in range(MAX_ALLOWED_IPS)]
    assert len(AllowList.parse(hundred).entries) == MAX_ALLOWED_IPS == 100
    with pytest.raises(InvalidRequest) as info:
        AllowList.parse([*hundred, "192.0.2.1"])
    assert (info.value.message, info.value.param) == (
        "allowed_ips may hold at most 100 entries; got 101", "allowed_ips")


def test_an_empty_list_admits_every_address_and_lists_compare_by_entries() -> None:
    AllowList.parse([]).check("")
    AllowList.parse([]).check("203.0.113.9")
    assert not AllowList.parse([]) and AllowList.parse(["::1"])
    assert AllowList.parse(["10.0.0.0/8"]) == AllowList.parse(["::ffff:10.0.0.0/104"])
    assert AllowList.parse(["10.0.0.0/8"]) != AllowList.parse(["10.0.0.0/9"])


class Store:
    """A KeyStore with only what the authenticator uses, counting lookups."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = keys
        self.lookups = 0

    async def by_hash(self, hashed: str) -> ApiKey | None:
        self.lookups += 1
        return self.keys.get(hashed)


SECRET = b"server-secret"


def _auth(key: ApiKey) -> tuple[str, Store, KeyAuthenticator]:
    plain = generate(key.tier)
    store = Store({key_hash(SECRET, plain): key})
    auth = KeyAuthenticator(store, secret=SECRET, master_key="sk-master",  # type: ignore[arg-type]
                            wall=lambda: 1_000.0)
    return plain, store, auth


def _key(*entries: str, disabled: bool = False) -> ApiKey:
    return ApiKey(id="key-1", account_id="acct", tier="pro", prefix="xr-pro-...",
                  allowed_ips=AllowList.parse(entries), disabled=disabled)


async def test_the_authenticator_admits_listed_addresses_only() -> None:
    key = _key("192.0.2.0/24", "2001:db8::/32")
    plain, store, auth = _auth(key)
    assert await auth.authenticate(plain, "192.0.2.7") == key
    assert await auth.authenticate(plain, "::ffff:192.0.2.8") == key
    assert await auth.authenticate(plain, "2001:db8::5") == key
    for address, shown in (("198.51.100.7", "198.51.100.7"), ("", "an unknown address"),
                           ("::1", "::1")):
        with pytest.raises(AddressNotAllowed) as info:
            await auth.authenticate(plain, address)
        assert isinstance(info.value, Forbidden) and info.value.kind is ErrorKind.FORBIDDEN
        assert info.value.message == (f"This API key may not be used from {shown}: the address "
                                      "is not allowed for this key")
        assert "192.0.2" not in info.value.message  # the list itself is never told
    # The list was parsed once, with the record: every check used the cached key.
    assert store.lookups == 1


async def test_without_an_address_a_listed_key_is_refused_and_an_unlisted_one_is_not() -> None:
    listed, _, auth = _auth(_key("0.0.0.0/0", "::/0"))
    with pytest.raises(AddressNotAllowed):
        await auth.authenticate(listed)  # no address metadata: fail closed
    plain, _, open_auth = _auth(_key())
    assert (await open_auth.authenticate(plain)).id == "key-1"
    assert (await open_auth.authenticate(plain, "garbage")).id == "key-1"


async def test_an_outside_address_learns_nothing_about_the_keys_state() -> None:
    plain, _, auth = _auth(_key("192.0.2.0/24", disabled=True))
    with pytest.raises(AddressNotAllowed):
        await auth.authenticate(plain, "198.51.100.7")
    with pytest.raises(Unauthenticated) as info:
        await auth.authenticate(plain, "192.0.2.7")
    assert info.value.message == "This API key is disabled"
