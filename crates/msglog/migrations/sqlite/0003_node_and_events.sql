-- Several nodes (issue 12): the node that handled each message, and the delivery outcomes
-- already applied (by event id), so that a batch written again is applied once.
ALTER TABLE messages ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE TABLE delivery_events (
    event_id TEXT PRIMARY KEY NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX delivery_events_at ON delivery_events (at);
