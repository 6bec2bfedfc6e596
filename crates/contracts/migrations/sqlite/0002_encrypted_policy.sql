-- R11: per-contract policy for password-protected attachments ('pass' or 'refuse').
ALTER TABLE contracts ADD COLUMN encrypted_attachments TEXT NOT NULL DEFAULT 'pass';
