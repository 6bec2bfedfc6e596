-- A finding of the conditions of use cleared by the operator: its measure counts only what
-- happened after (so a contract whose outbound mail was held can send again).
CREATE TABLE conditions_cleared (
    contract TEXT NOT NULL,
    kind TEXT NOT NULL,
    cleared_at BIGINT NOT NULL,
    cleared_by TEXT NOT NULL,
    PRIMARY KEY (contract, kind)
);
