"""The master-key authenticator: exactly one key, refused with the documented messages."""

from __future__ import annotations

import pytest

from xrouter_router.domain.auth import MasterKeyAuthenticator, Principal
from xrouter_router.domain.errors import ErrorKind, Unauthenticated


async def test_the_master_key_is_accepted_as_the_master_principal() -> None:
    auth = MasterKeyAuthenticator("sk-master")
    assert await auth.authenticate("sk-master") == Principal(key_id="master", account_id="master")


@pytest.mark.parametrize(("key", "message"), [
    ("", "Missing API key: send 'Authorization: Bearer <key>'"),
    ("sk-other", "Invalid API key"),
    ("sk-maste", "Invalid API key"),
    ("sk-master ", "Invalid API key"),
    ("SK-MASTER", "Invalid API key"),
])
async def test_any_other_key_is_unauthenticated(key: str, message: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        await MasterKeyAuthenticator("sk-master").authenticate(key)
    assert info.value.message == message
    assert str(info.value) == message
    assert info.value.kind is ErrorKind.UNAUTHENTICATED
    assert info.value.retryable is False


def test_an_empty_master_key_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"^the master key must not be empty$"):
        MasterKeyAuthenticator("")
