-- 0013: generations by time alone, for the operator's list of every account's latest generations
-- (GET /v1/generations with the master key and no account: newest first, a page at a time).
-- The lists of one account or one key range over 0001's (account_id, created_at DESC) and
-- (key_id, created_at DESC). On the partitioned table the index is made on every partition, and
-- partitions made later get it too. (0012 is the sessions' migration of issue 14.)

CREATE INDEX generations_created_idx ON generations (created_at DESC);
