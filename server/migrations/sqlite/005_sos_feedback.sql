-- SOS after close (issue 7 item 7): the person's feedback, one per incident (a second from
-- the phone replaces it), dispatch's outcome as a closed set (old free text moves to
-- outcome_note, the outcome becomes 'other'), and when an incident was first acknowledged
-- (for the admins' median time to acknowledge; NULL for incidents acknowledged before this).

ALTER TABLE sos_incidents ADD COLUMN acknowledged_at INTEGER;   -- Unix seconds, server clock
ALTER TABLE sos_incidents ADD COLUMN outcome_note TEXT;
UPDATE sos_incidents SET outcome_note = outcome, outcome = 'other'
 WHERE outcome IS NOT NULL AND outcome NOT IN ('assisted', 'arrest', 'referred', 'transported',
     'caller_cancelled', 'false_alarm', 'not_found', 'other');
CREATE INDEX sos_incidents_created ON sos_incidents (created_at);

CREATE TABLE sos_feedback (
    incident_id BLOB PRIMARY KEY REFERENCES sos_incidents (id),
    device_id   INTEGER NOT NULL,
    rating      INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    felt_safe   INTEGER CHECK (felt_safe IN (0, 1)),   -- NULL: not answered
    comment     TEXT,
    created_at  INTEGER NOT NULL,                      -- Unix seconds, server clock
    updated_at  INTEGER NOT NULL
);
