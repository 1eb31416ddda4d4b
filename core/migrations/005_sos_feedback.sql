-- Schema version 5: after an SOS incident. The person's feedback (one per incident; a new
-- one replaces it until the server has it, and is sent again), permanent send failures
-- (the server refused an incident's beacons for good: kept, shown, not retried), and the
-- credential kept at sign-out while an incident still has something to send.

-- Why the server refused this incident's beacons for good (400/404/410); NULL while fine.
ALTER TABLE sos_incidents ADD COLUMN send_error TEXT;

CREATE TABLE sos_feedback (
    incident_id BLOB    PRIMARY KEY REFERENCES sos_incidents (incident_id),
    rating      INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    felt_safe   INTEGER CHECK (felt_safe IN (0, 1)),
    comment     TEXT,
    -- When the person wrote it (phone clock); also its version while it is being sent.
    written_at  INTEGER NOT NULL,
    -- When the server confirmed it; NULL while queued.
    sent_at     INTEGER,
    -- Why the server refused it for good; NULL otherwise. Kept, not retried.
    send_error  TEXT
) WITHOUT ROWID;

-- At most one row: the account's server and token, kept at sign-out only while an incident
-- is live or has unsent beacons, so that the SOS sender can finish; deleted once it has.
CREATE TABLE sos_credential (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    server_url TEXT    NOT NULL,
    token      TEXT    NOT NULL
);
