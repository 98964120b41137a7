-- The operator surface (issue 13): the fleet's stored events and the audit
-- trail.
--
-- fleet_events: the event kinds that resume after a reconnect
-- (Last-Event-ID = id): config, command, rollout, device, dead_letter. Each
-- row is written in the transaction of the change it describes, so a
-- stream that resumes from an id misses nothing that committed. Telemetry
-- and presence are live only (they are already stored as telemetry rows and
-- as devices.last_seen_at). Trimmed by EVENT_RETENTION_HOURS.
CREATE TABLE fleet_events (
  id         bigserial PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT now(),
  kind       text NOT NULL CHECK (kind IN ('config', 'command', 'rollout', 'device', 'dead_letter')),
  type       text NOT NULL,
  device_id  text,
  data       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX fleet_events_at_idx ON fleet_events (at);

-- audit_log: who changed what through the REST API, written in the same
-- transaction as the change. actor_id is the token id ('admin' for
-- ADMIN_TOKEN); actor_name the token's name at the time. Trimmed by
-- AUDIT_RETENTION_DAYS.
CREATE TABLE audit_log (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor_id    text NOT NULL,
  actor_name  text NOT NULL,
  action      text NOT NULL,
  target_type text NOT NULL,
  target_id   text,
  request_id  text,
  before      jsonb,
  after       jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
