-- SOS after close (issue 7 item 7): the person's feedback, one per incident (a second from
-- the phone replaces it), dispatch's outcome as a closed set (old free text moves to
-- outcome_note, the outcome becomes 'other'), and when an incident was first acknowledged
-- (for the admins' median time to acknowledge; NULL for incidents acknowledged before this).

ALTER TABLE sos_incidents ADD COLUMN acknowledged_at BIGINT;   -- Unix seconds, server clock
ALTER TABLE sos_incidents ADD COLUMN outcome_note TEXT;
UPDATE sos_incidents SET outcome_note = outcome, outcome = 'other'
 WHERE outcome IS NOT NULL AND outcome NOT IN ('assisted', 'arrest', 'referred', 'transported',
     'caller_cancelled', 'false_alarm', 'not_found', 'other');
ALTER TABLE sos_incidents ADD CONSTRAINT sos_incidents_outcome CHECK (outcome IS NULL OR
    outcome IN ('assisted', 'arrest', 'referred', 'transported', 'caller_cancelled',
                'false_alarm', 'not_found', 'other'));
CREATE INDEX sos_incidents_created ON sos_incidents (created_at);

CREATE TABLE sos_feedback (
    incident_id BYTEA PRIMARY KEY REFERENCES sos_incidents (id),
    device_id   BIGINT NOT NULL,
    rating      SMALLINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    felt_safe   BOOLEAN,                                -- NULL: not answered
    comment     TEXT,
    created_at  BIGINT NOT NULL,                        -- Unix seconds, server clock
    updated_at  BIGINT NOT NULL
);
