-- Indexes for the operator's read queries (issue 13).
--
-- GET /v1/dead-letters pages newest first by (received_at, id) and counts
-- the same filters per reason. With id in the key the cursor's row
-- comparison (received_at, id) < (…) is an index condition and the order
-- needs no sort; with reason included, the counts are index-only scans of
-- a range (dead_letters is insert-only, so vacuum keeps its visibility map
-- set), never reads of the payloads. These replace the two indexes of
-- migration 001, whose leading columns they keep (retention deletes by
-- received_at). A reason filter alone has its own range.
CREATE INDEX dead_letters_received_id_idx ON dead_letters (received_at, id) INCLUDE (reason);
DROP INDEX dead_letters_received_idx;
CREATE INDEX dead_letters_device_received_id_idx ON dead_letters (device_id, received_at, id) INCLUDE (reason);
DROP INDEX dead_letters_device_idx;
CREATE INDEX dead_letters_reason_received_id_idx ON dead_letters (reason, received_at, id);
