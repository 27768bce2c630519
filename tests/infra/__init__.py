"""Real infrastructure started for tests from the Debian binaries (Redis Cluster)."""
