"""gRPC core's transport for both services, chosen before gRPC loads: importing this module
sets GRPC_EXPERIMENTS (unless the environment already does) so that TCP connections run on the
iomgr endpoints rather than the EventEngine's.

Why: with the EventEngine endpoints (grpcio's default since 1.6x) a message read on a socket is
handled on an EventEngine thread, then handed to the completion queue that grpc.aio's poller
thread waits on, then to the event loop: one thread hand-off more on every message than iomgr,
whose poller thread reads the socket itself. Measured here (docs/performance.md, issue 16's
fourth pass): a grpc.aio stream round trip 200-206 us against 335-389 us at one in flight, and
125 against 171-173 us of CPU (client and server) at sixteen. TLS, keepalives, deadlines and
the health service work the same on both.

gRPC core reads the variable once, when it loads (an assignment after `import grpc` is too late
for that process): each service imports this module before anything that imports grpc (its
`__main__` first; tests/conftest.py for the tests). A gRPC release in which these experiments
are no longer optional ignores the names, logging "Unknown experiment" once at start."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def choose(environ: MutableMapping[str, str]) -> str:
    """The experiments `environ` runs gRPC with: its own GRPC_EXPERIMENTS if set (an operator's
    choice wins), else EXPERIMENTS, which it then holds."""
    return environ.setdefault("GRPC_EXPERIMENTS", EXPERIMENTS)


choose(os.environ)
