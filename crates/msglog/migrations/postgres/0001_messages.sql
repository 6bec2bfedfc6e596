-- The message log (R19) shared by every node: one row per message, one per recipient with its
-- latest outcome, and the delivery outcomes already applied (by event id) so that a batch
-- written again (a node's journal replayed after an outage) is applied once.
CREATE TABLE messages (
    queue_id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    node TEXT NOT NULL,
    contract TEXT NOT NULL,
    direction TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    sender TEXT NOT NULL,
    size BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    verdict TEXT NOT NULL,
    viruses TEXT NOT NULL,
    action TEXT NOT NULL,
    result TEXT NOT NULL,
    reply TEXT NOT NULL,
    related TEXT NOT NULL,
    parts TEXT NOT NULL,
    signatures TEXT NOT NULL
);
CREATE INDEX messages_at ON messages (at);
CREATE INDEX messages_message_id ON messages (message_id);

CREATE TABLE recipients (
    id BIGSERIAL NOT NULL,
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    state TEXT NOT NULL,
    remote TEXT NOT NULL,
    reply TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (queue_id, rcpt)
);
CREATE INDEX recipients_rcpt ON recipients (lower(rcpt));

CREATE TABLE delivery_events (
    event_id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX delivery_events_at ON delivery_events (at);

-- One purge for the whole cluster per interval, whichever node runs it.
CREATE TABLE log_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO log_meta (key, value) VALUES ('purged_at', 0);
