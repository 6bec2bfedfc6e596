-- Issued statements: frozen as issued and numbered; a correction is a new statement that names
-- the one it corrects (the first is never changed).
CREATE TABLE statements (
    number INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    month TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    corrects INTEGER,
    total BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX statements_by_month ON statements (month, customer);
