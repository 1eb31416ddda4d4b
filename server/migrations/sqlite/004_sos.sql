-- SOS silent call (issue 7, ADR 0005): incidents, the beacons (fixes, states, replies) the
-- phone sends, stored once per (incident, seq); the server's events (a store-wide
-- increasing id: the dispatcher feed's and the phone's long-poll cursor); dispatcher
-- messages and notes; per-device SMS keys.

CREATE TABLE sos_incidents (
    id             BLOB PRIMARY KEY,              -- 16 bytes, chosen by the phone
    account_id     INTEGER NOT NULL REFERENCES accounts (id),
    device_id      INTEGER NOT NULL,
    trigger_method TEXT NOT NULL,
    triggered_at   INTEGER NOT NULL,              -- ms, phone clock
    region         TEXT,                          -- from the first fix; NULL before one
    reported_state TEXT NOT NULL,                 -- active | duress | cancelled
    phase          TEXT NOT NULL DEFAULT 'received', -- received | acknowledged | unit_assigned | resolved
    duress         INTEGER NOT NULL DEFAULT 0,    -- sticky once the duress PIN was used
    unit           TEXT,
    outcome        TEXT,
    up_to_seq      INTEGER NOT NULL DEFAULT 0,    -- every seq 1..=up_to_seq is stored
    created_at     INTEGER NOT NULL,              -- Unix seconds, server clock
    updated_at     INTEGER NOT NULL,
    closed_at      INTEGER
);
CREATE INDEX sos_incidents_open ON sos_incidents (closed_at, region);

CREATE TABLE sos_beacons (
    incident_id BLOB NOT NULL REFERENCES sos_incidents (id),
    seq         INTEGER NOT NULL,
    state       TEXT NOT NULL,
    lat         REAL,
    lon         REAL,
    accuracy_m  REAL,
    fix_time_ms INTEGER,
    body        TEXT NOT NULL,                    -- the beacon's JSON, as received
    via         TEXT NOT NULL,                    -- https | sms
    received_at INTEGER NOT NULL,
    PRIMARY KEY (incident_id, seq)
);

CREATE TABLE sos_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id BLOB NOT NULL REFERENCES sos_incidents (id),
    kind        TEXT NOT NULL CHECK (kind IN ('message', 'note')),
    author_id   INTEGER NOT NULL,                 -- staff member
    text        TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX sos_messages_incident ON sos_messages (incident_id, id);

CREATE TABLE sos_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id BLOB NOT NULL REFERENCES sos_incidents (id),
    region      TEXT,
    kind        TEXT NOT NULL,                    -- incident | fix | state | message | note
    body        TEXT NOT NULL,                    -- the feed's JSON
    phone_event TEXT,                             -- the phone's ServerEvent JSON, if it gets one
    at          INTEGER NOT NULL
);
CREATE INDEX sos_events_incident ON sos_events (incident_id, id);

CREATE TABLE sos_sms_keys (
    key_id     INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL UNIQUE,
    account_id INTEGER NOT NULL,
    key        BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
