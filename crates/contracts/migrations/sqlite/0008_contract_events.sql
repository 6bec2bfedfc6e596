-- What operators did to contracts beyond the revisions themselves: withdrawals (who, why) and
-- later revisions carried over an earlier change. The rest of a contract's history is its
-- revisions, and what the dates make of them (activated, change effective, cancelled).
CREATE TABLE contract_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    contract_id TEXT NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    rev INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX contract_events_by_contract ON contract_events (contract_id, seq);
