-- Recipient searches compare addresses in any case (lower(rcpt) = lower(?)): index that
-- expression, as the PostgreSQL schema does, so a search by recipient reads the recipient's
-- rows instead of every message of the window.
DROP INDEX IF EXISTS recipients_rcpt;
CREATE INDEX recipients_rcpt ON recipients (lower(rcpt));
