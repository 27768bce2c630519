"""Names both tiers must agree on for the gateway -> router gRPC hop (besides the proto)."""

from __future__ import annotations

# Trailing metadata key carrying a serialized xrouter.v1.ErrorDetail on failed calls.
ERROR_DETAIL_KEY = "xrouter-error-bin"
# Request metadata keys.
AUTHORIZATION_KEY = "authorization"
REQUEST_ID_KEY = "x-request-id"
TRACEPARENT_KEY = "traceparent"
# The client's address as the gateway determined it (the socket peer, or the X-Forwarded-For
# client when the peer is a trusted proxy): keys with an IP allow-list are checked against it.
CLIENT_ADDRESS_KEY = "xrouter-client-address"
