-- Schema version 4: SOS silent call. Not a CRDT: rows, appended in order, each written
-- before anything about it is sent. Times are milliseconds since the Unix epoch (phone clock).

-- One row per incident this phone triggered; at most one is live at a time.
CREATE TABLE sos_incidents (
    -- Local order of triggers (the latest incident is the one with the highest).
    local_id     INTEGER PRIMARY KEY,
    incident_id  BLOB    NOT NULL UNIQUE CHECK (length(incident_id) = 16),
    trigger      TEXT    NOT NULL,
    triggered_at INTEGER NOT NULL,
    -- sos::state::Phase as_str; `duress` is the duress cover (never with 'cancelled').
    phase        TEXT    NOT NULL,
    duress       INTEGER NOT NULL DEFAULT 0 CHECK (duress IN (0, 1)),
    -- The last sequence number given to a beacon of this incident (0 before the first).
    last_seq     INTEGER NOT NULL DEFAULT 0,
    -- The assigned unit's call sign, if dispatch shared one.
    unit         TEXT,
    updated_at   INTEGER NOT NULL,
    CHECK (NOT (duress = 1 AND phase = 'cancelled'))
);

-- Every beacon of every incident: a new fix, a state report or a reply, numbered from 1
-- per incident without gaps. Fix columns are all NULL when the phone had no position yet.
CREATE TABLE sos_beacons (
    incident_id BLOB    NOT NULL REFERENCES sos_incidents (incident_id),
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    -- sos::ReportedState as_str, as reported in this beacon.
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    -- 1 when the beacon brought a fix the platform just pushed; 0 when it repeats the last.
    new_fix     INTEGER NOT NULL DEFAULT 0 CHECK (new_fix IN (0, 1)),
    lat         REAL,
    lon         REAL,
    accuracy_m  REAL,
    altitude_m  REAL,
    speed_mps   REAL,
    heading_deg REAL,
    fix_time    INTEGER,
    method      TEXT,
    battery_pct INTEGER,
    -- A reply: free text or a quick reply's as_str (at most one of the two).
    reply_text  TEXT,
    reply_quick TEXT,
    PRIMARY KEY (incident_id, seq)
) WITHOUT ROWID;

-- Beacons the server has not confirmed yet. SOS has this queue to itself, so a beacon never
-- waits behind drafts or attachments; rows leave it only when the server confirms them.
CREATE TABLE sos_outbox (
    incident_id BLOB    NOT NULL,
    seq         INTEGER NOT NULL,
    queued_at   INTEGER NOT NULL,
    PRIMARY KEY (incident_id, seq),
    FOREIGN KEY (incident_id, seq) REFERENCES sos_beacons (incident_id, seq)
) WITHOUT ROWID;

-- Dispatchers' messages, each stored once by the server's id. `visible` is 0 for those that
-- arrived under the duress cover or after a cancel: they are kept but never shown.
CREATE TABLE sos_messages (
    incident_id BLOB    NOT NULL REFERENCES sos_incidents (incident_id),
    server_id   INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    visible     INTEGER NOT NULL CHECK (visible IN (0, 1)),
    PRIMARY KEY (incident_id, server_id)
) WITHOUT ROWID;

-- SOS settings; at most one row. PINs are argon2id PHC strings, never the PINs.
CREATE TABLE sos_settings (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    pin_hash        TEXT,
    duress_pin_hash TEXT,
    -- The SMS fallback: the number to text, and the per-device key the server knows by id.
    sms_number      TEXT,
    sms_key_id      INTEGER,
    sms_key         BLOB CHECK (sms_key IS NULL OR length(sms_key) = 32),
    -- Wrong PINs in a row, and until when PIN entry is locked after too many.
    failed_pins     INTEGER NOT NULL DEFAULT 0,
    pins_locked_until INTEGER NOT NULL DEFAULT 0
);
