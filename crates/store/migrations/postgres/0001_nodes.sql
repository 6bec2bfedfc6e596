-- The node registry: one row per gateway node, rewritten by its heartbeat.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL,
    version TEXT NOT NULL,
    signatures TEXT NOT NULL,
    signatures_at BIGINT NOT NULL,
    contracts_generation BIGINT NOT NULL,
    contracts_stale BIGINT NOT NULL,
    queue_active BIGINT NOT NULL,
    queue_deferred BIGINT NOT NULL,
    started BIGINT NOT NULL,
    heartbeat BIGINT NOT NULL
);
