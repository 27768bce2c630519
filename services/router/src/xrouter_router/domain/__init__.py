"""The router's pure core: types, catalog, routing, failover, accounting. No I/O drivers."""
