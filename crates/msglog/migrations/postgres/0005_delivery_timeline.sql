-- Each delivery outcome as it happened (not only the recipient's latest), for one message's
-- per-recipient timeline; and the messages generated about another (warnings, DSNs) found
-- by the one they are about.
ALTER TABLE delivery_events ADD COLUMN queue_id TEXT NOT NULL DEFAULT '';
ALTER TABLE delivery_events ADD COLUMN rcpt TEXT NOT NULL DEFAULT '';
ALTER TABLE delivery_events ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE delivery_events ADD COLUMN remote TEXT NOT NULL DEFAULT '';
ALTER TABLE delivery_events ADD COLUMN reply TEXT NOT NULL DEFAULT '';
CREATE INDEX delivery_events_queue_id ON delivery_events (queue_id);
CREATE INDEX messages_related ON messages (related);
