-- The message log (R19): one row per message, one row per recipient with its latest outcome.
CREATE TABLE messages (
    queue_id TEXT PRIMARY KEY NOT NULL,
    at INTEGER NOT NULL,            -- Unix seconds, when the message was received or generated
    contract TEXT NOT NULL,
    direction TEXT NOT NULL,        -- inbound, outbound, warning, dsn
    client_ip TEXT NOT NULL,
    sender TEXT NOT NULL,
    size INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    verdict TEXT NOT NULL,          -- clean, infected, encrypted, limit-exceeded, unscannable, or empty
    viruses TEXT NOT NULL,          -- names, comma-separated
    action TEXT NOT NULL,           -- deliver, deliver-unscanned, rewrite, drop, refuse
    result TEXT NOT NULL,           -- what the result header says
    reply TEXT NOT NULL,            -- the SMTP reply given to the client
    related TEXT NOT NULL,          -- for warnings and DSNs: the message they are about
    parts TEXT NOT NULL             -- JSON: [{path, name, file, verdict}]
);
CREATE INDEX messages_at ON messages (at);
CREATE INDEX messages_message_id ON messages (message_id);

CREATE TABLE recipients (
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    state TEXT NOT NULL,            -- queued, delivered, deferred, bounced, dropped, refused
    remote TEXT NOT NULL,
    reply TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (queue_id, rcpt)
);
CREATE INDEX recipients_rcpt ON recipients (rcpt);
