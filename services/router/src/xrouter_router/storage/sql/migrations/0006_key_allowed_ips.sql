-- 0006: an IP allow-list per API key. Each entry is an IPv4/IPv6 address or CIDR network in the
-- canonical form the router writes (domain/addresses.py checks it); empty: any address. Keys that
-- exist keep working from anywhere.

ALTER TABLE api_keys ADD COLUMN allowed_ips text[] NOT NULL DEFAULT '{}';
