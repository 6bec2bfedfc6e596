-- The node registry: one row per gateway node, rewritten by its heartbeat.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL,
    version TEXT NOT NULL,
    signatures TEXT NOT NULL,
    signatures_at INTEGER NOT NULL,
    contracts_generation INTEGER NOT NULL,
    contracts_stale INTEGER NOT NULL,
    queue_active INTEGER NOT NULL,
    queue_deferred INTEGER NOT NULL,
    started INTEGER NOT NULL,
    heartbeat INTEGER NOT NULL
);
