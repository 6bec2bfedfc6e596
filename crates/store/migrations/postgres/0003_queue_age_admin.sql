-- When the oldest message waiting for a retry was received (Unix seconds; 0: none), and the
-- node's admin listener (its URL, empty when it has none), so one node's console can show and
-- reach the queues of the others.
ALTER TABLE nodes ADD COLUMN queue_oldest_deferred BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN admin TEXT NOT NULL DEFAULT '';
