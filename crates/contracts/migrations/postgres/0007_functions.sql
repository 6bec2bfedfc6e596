-- The security functions a contract uses (R16), one name per line ("inbound", "outbound");
-- contracts stored before had both.
ALTER TABLE contracts ADD COLUMN functions TEXT NOT NULL DEFAULT 'inbound
outbound';
