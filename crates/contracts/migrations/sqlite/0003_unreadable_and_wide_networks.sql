-- Per-contract policy for content that cannot be read ('pass' or 'refuse'), and whether the
-- contract may list sending networks wider than the default bound.
ALTER TABLE contracts ADD COLUMN unreadable_attachments TEXT NOT NULL DEFAULT 'pass';
ALTER TABLE contracts ADD COLUMN wide_sending_networks INTEGER NOT NULL DEFAULT 0;
