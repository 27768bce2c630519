"""How the gateway turns XROUTER_ROUTER_TARGET into one gRPC channel target, and which
router failures it retries on another replica."""

from __future__ import annotations

import grpc
import pytest

from xrouter_common.env import ConfigError
from xrouter_gateway.router_client import channel_target, retryable


@pytest.mark.parametrize(("spec", "target"), [
    ("dns:///x:1", "dns:///x:1"),
    ("dns:///router-headless:50051", "dns:///router-headless:50051"),
    ("ipv4:10.0.0.1:1,10.0.0.2:2", "ipv4:10.0.0.1:1,10.0.0.2:2"),
    ("ipv6:[::1]:5", "ipv6:[::1]:5"),
    ("unix:/run/router.sock", "unix:/run/router.sock"),
    ("router:50051", "dns:///router:50051"),
    ("localhost:50051", "dns:///localhost:50051"),
    ("127.0.0.1:50051", "ipv4:127.0.0.1:50051"),
    ("10.0.0.1:1,10.0.0.2:2", "ipv4:10.0.0.1:1,10.0.0.2:2"),
    (" 10.0.0.1:1 , 10.0.0.2:2 ,", "ipv4:10.0.0.1:1,10.0.0.2:2"),
    ("[::1]:5", "ipv6:[::1]:5"),
    ("[::1]:5,[fe80::1]:6", "ipv6:[::1]:5,[fe80::1]:6"),
])
def test_channel_target(spec: str, target: str) -> None:
    assert channel_target(spec) == target


@pytest.mark.parametrize("spec", ["", " ", ",", " , "])
def test_an_empty_target_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"^XROUTER_ROUTER_TARGET is empty$"):
        channel_target(spec)


def test_a_list_of_host_names_is_refused_with_guidance() -> None:
    with pytest.raises(ConfigError, match=r"a list must hold IP addresses of one family"):
        channel_target("router-a:50051,router-b:50051")
    with pytest.raises(ConfigError, match=r"for host names use one name"):
        channel_target("10.0.0.1:1,[::1]:2")
    assert channel_target("router:50051") == "dns:///router:50051"


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


@pytest.mark.parametrize(("exc", "expected"), [
    (_rpc_error(grpc.StatusCode.UNAVAILABLE), True),
    (_rpc_error(grpc.StatusCode.UNKNOWN), False),
    (_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), False),
    (_rpc_error(grpc.StatusCode.INTERNAL), False),
    (ConnectionError("reset"), False),
])
def test_only_unavailable_is_retried_on_another_replica(exc: BaseException, expected: bool) -> None:
    assert retryable(exc) is expected
