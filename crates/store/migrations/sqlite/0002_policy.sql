-- A fingerprint of the settings that decide what a node accepts (size and recipient limits,
-- scanning), so that a secondary MX more lenient than the primary shows.
ALTER TABLE nodes ADD COLUMN policy TEXT NOT NULL DEFAULT '';
