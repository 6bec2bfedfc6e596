-- Every change made to a contract, kept (issue 14): what it became (the contract as a
-- [[contract]] block of a contracts file; empty when it was removed), from which day, which
-- fields changed, who made it and why. Existing contracts get their revision 1 from the code
-- (Store::connect), which can write the block.
CREATE TABLE contract_revisions (
    contract_id TEXT NOT NULL,
    rev BIGINT NOT NULL,
    effective_from TEXT NOT NULL,
    doc TEXT NOT NULL,
    changed TEXT NOT NULL,
    created_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (contract_id, rev)
);
