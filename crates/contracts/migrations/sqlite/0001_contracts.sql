CREATE TABLE contracts (
    id TEXT PRIMARY KEY NOT NULL,
    customer TEXT NOT NULL,
    accounts_limit INTEGER NOT NULL,
    starts TEXT NOT NULL,
    ends TEXT,
    sending_servers TEXT NOT NULL,
    position INTEGER NOT NULL
);

CREATE TABLE domains (
    name TEXT PRIMARY KEY NOT NULL,
    contract_id TEXT NOT NULL REFERENCES contracts(id) ON DELETE CASCADE,
    receiving_servers TEXT NOT NULL,
    position INTEGER NOT NULL
);

CREATE TABLE accounts (
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    local_part TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (domain, local_part)
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);

INSERT INTO meta (key, value) VALUES ('generation', 0);
