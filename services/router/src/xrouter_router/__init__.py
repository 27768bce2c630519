"""XRouter's router tier: authentication, provider selection, failover and accounting over gRPC."""
