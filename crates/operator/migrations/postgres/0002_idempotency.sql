-- The answer to a creating request sent with an Idempotency-Key, kept so that the same request
-- sent again gets the same answer instead of a second creation.
CREATE TABLE admin_idempotency (
    token_id TEXT NOT NULL,
    key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (token_id, key)
);
