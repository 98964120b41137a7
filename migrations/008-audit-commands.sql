-- Issue 13: operators cancel commands; the device list filters by config
-- state and id prefix.

-- An operator may cancel a queued or sent command (POST
-- /v1/commands/{id}/cancel). Final like expired: a result the device sends
-- afterwards is ignored and counted.
ALTER TABLE commands DROP CONSTRAINT commands_status_check;
ALTER TABLE commands ADD CONSTRAINT commands_status_check
  CHECK (status IN ('queued', 'sent', 'succeeded', 'failed', 'expired', 'cancelled'));

-- GET /v1/devices?configState=pending|failed: the devices whose config is
-- not in sync are few in a healthy fleet, so a page of them must not walk
-- every device (the console lists them over 100,000 devices). These partial
-- indexes hold only those rows, in device id order (the list's order); the
-- conditions are those of devices/device-store.ts CONFIG_STATE_WHERE.
CREATE INDEX device_configs_pending_idx ON device_configs (device_id)
  WHERE reported_version IS DISTINCT FROM desired_version;
CREATE INDEX device_configs_failed_idx ON device_configs (device_id)
  WHERE reported_status = 'failed';

-- GET /v1/devices?idPrefix=…: a LIKE 'prefix%' range. The primary key
-- serves it only in the C collation; a database created with another one
-- (en_US.UTF-8, C.UTF-8 of glibc: the usual managed PostgreSQL) needs an
-- index with the pattern operator class.
CREATE INDEX devices_id_pattern_idx ON devices (id text_pattern_ops);
