-- Replica liveness (issue 6). Each broker process (brokerId = a UUID per
-- start) records a heartbeat here; devices.broker_id names the replica that
-- holds a device's connection. A replica that vanishes without shutting down
-- (SIGKILL, node lost) stops heartbeating; once its heartbeat is older than
-- BROKER_EXPIRY_MS any replica sets its devices offline and removes its row.
-- PostgreSQL's clock decides age, so replicas' clocks need not agree.
CREATE TABLE brokers (
  id            text PRIMARY KEY,
  host          text,
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- The sweep looks for online devices whose broker is gone.
DROP INDEX devices_online_idx;
CREATE INDEX devices_online_broker_idx ON devices (broker_id) WHERE online;
