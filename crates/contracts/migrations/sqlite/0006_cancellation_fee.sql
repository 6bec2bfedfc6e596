-- The early-termination fee quoted when a contract was cancelled (integer yen, before tax),
-- kept with the revision that cancels it: statements use the figure that was quoted.
ALTER TABLE contract_revisions ADD COLUMN fee INTEGER;
