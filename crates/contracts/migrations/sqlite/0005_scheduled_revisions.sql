-- A revision recorded for a later day (contracts apply --on DATE) is pending: the contracts
-- tables hold the contracts as they are now, and nodes apply a pending revision from its day.
-- An apply on or after that day supersedes it (pending = 0). Withdrawn before its day: kept,
-- marked.
ALTER TABLE contract_revisions ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contract_revisions ADD COLUMN withdrawn_at TEXT;
