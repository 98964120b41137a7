-- Control plane (issue 3): operator tokens, desired/reported configuration,
-- commands with a lifecycle, fleet rollouts.

-- Operator API tokens: random 256-bit strings shown once; stored as SHA-256.
CREATE TABLE api_tokens (
  id           text PRIMARY KEY,
  name         text NOT NULL,
  token_hash   text NOT NULL UNIQUE,
  scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'write', 'admin']::text[] AND cardinality(scopes) > 0),
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz,
  last_used_at timestamptz
);

-- Desired configuration (set by operators, versioned per device) and the
-- version the device last reported as applied.
CREATE TABLE device_configs (
  device_id        text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
  desired_version  integer NOT NULL CHECK (desired_version > 0),
  desired_config   jsonb NOT NULL,
  desired_at       timestamptz NOT NULL DEFAULT now(),
  reported_version integer,
  reported_config  jsonb,
  reported_at      timestamptz
) WITH (fillfactor = 80);

CREATE TABLE commands (
  id               uuid PRIMARY KEY,
  device_id        text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  name             text NOT NULL,
  params           jsonb NOT NULL DEFAULT '{}'::jsonb,
  status           text NOT NULL CHECK (status IN ('queued', 'sent', 'succeeded', 'failed', 'expired')),
  created_at       timestamptz NOT NULL DEFAULT now(),
  expires_at       timestamptz NOT NULL,
  sent_at          timestamptz,
  completed_at     timestamptz,
  result           jsonb,
  idempotency_key  text,
  correlation_id   text
);
CREATE UNIQUE INDEX commands_idempotency_idx ON commands (device_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX commands_device_idx ON commands (device_id, created_at, id);
CREATE INDEX commands_open_idx ON commands (expires_at) WHERE status IN ('queued', 'sent');

CREATE TABLE rollouts (
  id              uuid PRIMARY KEY,
  selector        jsonb NOT NULL,
  config          jsonb NOT NULL,
  rate_per_second integer CHECK (rate_per_second IS NULL OR rate_per_second > 0),
  status          text NOT NULL CHECK (status IN ('running', 'paused', 'cancelled', 'completed')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per device a rollout targets; `version` is the desired version the
-- rollout gave it when it was pushed (NULL: not pushed yet).
CREATE TABLE rollout_targets (
  rollout_id uuid NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  version    integer,
  pushed_at  timestamptz,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_targets_pending_idx ON rollout_targets (rollout_id) WHERE pushed_at IS NULL;
