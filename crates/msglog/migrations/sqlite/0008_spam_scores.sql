-- Spam scores of outbound mail (R18), from the operator's spam engine (spamd or rspamd): per
-- contract and UTC day, the messages scored, those at or above the engine's threshold, and those
-- the engine could not score (down, timed out, too large) — summed from every node's deltas.
CREATE TABLE spam_scores (
    contract TEXT NOT NULL,
    day BIGINT NOT NULL,
    scored BIGINT NOT NULL,
    spam BIGINT NOT NULL,
    unmeasured BIGINT NOT NULL,
    PRIMARY KEY (contract, day)
);
