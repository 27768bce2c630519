"""Redis Cluster adapters: the client and its scripts, the lane, limits and credits, statistics,
key revocations and the ledger stream with its consumer."""
