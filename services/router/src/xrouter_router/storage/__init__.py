"""Adapters that keep the router's state outside the domain (Redis Cluster, databases)."""
