-- Hourly roll-ups, counted as records are first written (a batch written again adds nothing):
-- dashboards and aggregates read these, never the raw log.
CREATE TABLE log_hourly (
    hour BIGINT NOT NULL,
    contract TEXT NOT NULL,
    direction TEXT NOT NULL,
    verdict TEXT NOT NULL,
    action TEXT NOT NULL,
    messages BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (hour, contract, direction, verdict, action)
);
CREATE TABLE log_hourly_outcomes (
    hour BIGINT NOT NULL,
    state TEXT NOT NULL,
    recipients BIGINT NOT NULL,
    PRIMARY KEY (hour, state)
);
