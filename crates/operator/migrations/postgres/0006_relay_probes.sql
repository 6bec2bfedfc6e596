-- The open-relay probe (R18): one row per attempt on one server of a contract, with the
-- transcript of the conversation and, when the canary arrived, when, from where and its header
-- section — the evidence.
CREATE TABLE relay_probes (
    token TEXT PRIMARY KEY,
    contract TEXT NOT NULL,
    server TEXT NOT NULL,
    node TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    transcript TEXT NOT NULL,
    arrived_at BIGINT,
    arrived_from TEXT,
    arrival TEXT
);
CREATE INDEX relay_probes_by_contract ON relay_probes (contract, started_at);

-- Scheduled probe runs: one row per contract, period and set of servers; the node whose insert
-- succeeds runs the probe (a changed set of servers is a new run).
CREATE TABLE relay_runs (
    contract TEXT NOT NULL,
    period BIGINT NOT NULL,
    servers TEXT NOT NULL,
    node TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (contract, period, servers)
);

-- A finding the operator has seen and acknowledged (it stays open, and keeps counting).
CREATE TABLE conditions_acknowledged (
    contract TEXT NOT NULL,
    kind TEXT NOT NULL,
    acknowledged_at BIGINT NOT NULL,
    acknowledged_by TEXT NOT NULL,
    PRIMARY KEY (contract, kind)
);

-- The mails of the policy `warn`: one per finding and episode (from its last clearing), sent by
-- the node whose insert succeeds.
CREATE TABLE conditions_notices (
    contract TEXT NOT NULL,
    kind TEXT NOT NULL,
    episode BIGINT NOT NULL,
    node TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (contract, kind, episode)
);
