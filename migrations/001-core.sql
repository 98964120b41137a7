-- fleetgate core schema (issue 2): devices, telemetry, dead letters.

CREATE TABLE devices (
  -- A device id is one MQTT topic level: devices/{id}/... (see devices/device-id.ts).
  id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$'),
  -- 'hmac-sha256$<salt>$<digest>'; the secret itself is never stored.
  secret_hash     text NOT NULL,
  name            text,
  labels          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  disabled_at     timestamptz,
  secret_rotated_at timestamptz,
  -- presence, written in batches by the broker (broker/presence-tracker.ts)
  online          boolean NOT NULL DEFAULT false,
  connected_at    timestamptz,
  last_seen_at    timestamptz,
  broker_id       text
) WITH (fillfactor = 70); -- room for HOT updates: presence rewrites rows every PRESENCE_FLUSH_MS
CREATE INDEX devices_labels_idx ON devices USING gin (labels jsonb_path_ops);
CREATE INDEX devices_online_idx ON devices (online) WHERE online;

-- One row per reading. A reading is identified by its device, its own time
-- and its content (reading_hash: 64 bits of SHA-1 over the reading's JSON),
-- so a QoS 1 retransmission carrying the same ts does not add a second row
-- while two different readings sharing a ts are both kept. The primary key
-- doubles as the index for per-device time-range queries, so deduplication
-- costs no extra index.
CREATE TABLE telemetry (
  device_id    text        NOT NULL,
  ts           timestamptz NOT NULL,
  reading_hash bigint      NOT NULL,
  received_at  timestamptz NOT NULL,
  payload      jsonb       NOT NULL,
  PRIMARY KEY (device_id, ts, reading_hash)
);

-- Messages that were refused after being received (bad JSON, wrong shape, too
-- large, a row PostgreSQL rejects): kept with their raw bytes and a stable
-- reason code, and acknowledged to the device, so nothing is silently lost.
CREATE TABLE dead_letters (
  id          bigserial PRIMARY KEY,
  device_id   text,
  topic       text NOT NULL,
  payload     bytea NOT NULL,
  reason      text NOT NULL,
  detail      text,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_device_idx ON dead_letters (device_id, received_at);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
