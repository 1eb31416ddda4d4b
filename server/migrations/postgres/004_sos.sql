-- SOS silent call (issue 7, ADR 0005): incidents, the beacons (fixes, states, replies) the
-- phone sends, stored once per (incident, seq); the server's events (a store-wide
-- increasing id: the dispatcher feed's and the phone's long-poll cursor); dispatcher
-- messages and notes; per-device SMS keys. Event ids are assigned under one advisory lock,
-- so they commit in id order and a reader by id never skips one.

CREATE TABLE sos_incidents (
    id             BYTEA PRIMARY KEY,              -- 16 bytes, chosen by the phone
    account_id     BIGINT NOT NULL REFERENCES accounts (id),
    device_id      BIGINT NOT NULL,
    trigger_method TEXT NOT NULL,
    triggered_at   BIGINT NOT NULL,              -- ms, phone clock
    region         TEXT,                          -- from the first fix; NULL before one
    reported_state TEXT NOT NULL,                 -- active | duress | cancelled
    phase          TEXT NOT NULL DEFAULT 'received', -- received | acknowledged | unit_assigned | resolved
    duress         BOOLEAN NOT NULL DEFAULT FALSE,    -- sticky once the duress PIN was used
    unit           TEXT,
    outcome        TEXT,
    up_to_seq      BIGINT NOT NULL DEFAULT 0,    -- every seq 1..=up_to_seq is stored
    created_at     BIGINT NOT NULL,              -- Unix seconds, server clock
    updated_at     BIGINT NOT NULL,
    closed_at      BIGINT
);
CREATE INDEX sos_incidents_open ON sos_incidents (closed_at, region);

CREATE TABLE sos_beacons (
    incident_id BYTEA NOT NULL REFERENCES sos_incidents (id),
    seq         BIGINT NOT NULL,
    state       TEXT NOT NULL,
    lat         DOUBLE PRECISION,
    lon         DOUBLE PRECISION,
    accuracy_m  DOUBLE PRECISION,
    fix_time_ms BIGINT,
    body        TEXT NOT NULL,                    -- the beacon's JSON, as received
    via         TEXT NOT NULL,                    -- https | sms
    received_at BIGINT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);

CREATE TABLE sos_messages (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BYTEA NOT NULL REFERENCES sos_incidents (id),
    kind        TEXT NOT NULL CHECK (kind IN ('message', 'note')),
    author_id   BIGINT NOT NULL,                 -- staff member
    text        TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX sos_messages_incident ON sos_messages (incident_id, id);

CREATE TABLE sos_events (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BYTEA NOT NULL REFERENCES sos_incidents (id),
    region      TEXT,
    kind        TEXT NOT NULL,                    -- incident | fix | state | message | note
    body        TEXT NOT NULL,                    -- the feed's JSON
    phone_event TEXT,                             -- the phone's ServerEvent JSON, if it gets one
    at          BIGINT NOT NULL
);
CREATE INDEX sos_events_incident ON sos_events (incident_id, id);

CREATE TABLE sos_sms_keys (
    key_id     BIGINT PRIMARY KEY,
    device_id  BIGINT NOT NULL UNIQUE,
    account_id BIGINT NOT NULL,
    key        BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
