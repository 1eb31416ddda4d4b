-- The SOS event log's order without one lock held through every SOS commit (ADR 0006,
-- amended). Writers insert events unnumbered (pos NULL, invisible to readers) and commit in
-- parallel; a short serialized step (`store::sos_sequence`, under one advisory lock) then
-- numbers every committed unnumbered event from `sos_event_pos` and commits. Steps commit one
-- after the other, so `pos` values become visible in increasing order and a reader resuming
-- after `pos` N never misses an event numbered later. `pos` is the cursor of the dispatcher
-- feed (`Last-Event-ID`) and of the phone's events; `id` only orders events within a step.

ALTER TABLE sos_events ADD COLUMN pos BIGINT;
UPDATE sos_events SET pos = id;
CREATE SEQUENCE sos_event_pos;
SELECT setval('sos_event_pos', COALESCE(MAX(pos), 0) + 1, false) FROM sos_events;
CREATE UNIQUE INDEX sos_events_pos ON sos_events (pos);
CREATE INDEX sos_events_unnumbered ON sos_events (id) WHERE pos IS NULL;
DROP INDEX sos_events_incident;
CREATE INDEX sos_events_incident ON sos_events (incident_id, pos);
-- (sos_beacons.via may now also be 'live': a beacon sent over the phone's sync connection.)
