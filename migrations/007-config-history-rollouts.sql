-- Config history, failed applies and rollouts that stop themselves (issue 13).

-- Every desired version of a device's config, with who set it and how
-- (issue 13: "Every desired version is kept"). Written in the same
-- statement or transaction as the device_configs change that makes it
-- desired. set_by_*: the operator's token (id, name at the time); for a
-- rollout step, the operator who created the rollout; NULL for versions set
-- before this migration (who set them was never recorded).
CREATE TABLE config_versions (
  device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  version     integer NOT NULL CHECK (version > 0),
  config      jsonb NOT NULL,
  set_at      timestamptz NOT NULL DEFAULT now(),
  set_by_id   text,
  set_by_name text,
  source      text NOT NULL CHECK (source IN ('api', 'rollback', 'rollout')),
  -- No foreign key: rollouts are never deleted, and a key would cost a
  -- look-up on each of a rollout step's thousands of rows.
  rollout_id  uuid,
  PRIMARY KEY (device_id, version)
);

-- The current desired version of each device is the only one known so far.
-- It came from a rollout when a rollout target holds that very version.
INSERT INTO config_versions (device_id, version, config, set_at, source, rollout_id)
SELECT c.device_id, c.desired_version, c.desired_config, c.desired_at,
       CASE WHEN t.rollout_id IS NULL THEN 'api' ELSE 'rollout' END, t.rollout_id
  FROM device_configs c
  LEFT JOIN LATERAL (SELECT rollout_id FROM rollout_targets
                      WHERE device_id = c.device_id AND version = c.desired_version LIMIT 1) t ON true;

-- What the device last reported about a version: applied, or failed with
-- the device's own error text. reported_version is the version of that last
-- report. A report without status (the form before issue 13) means applied.
ALTER TABLE device_configs
  ADD COLUMN reported_status text CHECK (reported_status IN ('applied', 'failed')),
  ADD COLUMN reported_error  text;
UPDATE device_configs SET reported_status = 'applied' WHERE reported_version IS NOT NULL;

-- Rollouts carry a config or a command; safety thresholds pause them.
ALTER TABLE rollouts
  ADD COLUMN kind text NOT NULL DEFAULT 'config' CHECK (kind IN ('config', 'command')),
  -- {name, params, ttlSeconds}: one command per target, created when it is pushed.
  ADD COLUMN command jsonb,
  ADD COLUMN max_failures integer CHECK (max_failures >= 0),
  ADD COLUMN max_failure_ratio real CHECK (max_failure_ratio >= 0 AND max_failure_ratio <= 1),
  -- Why the rollout paused itself (NULL when running, or paused by an operator).
  ADD COLUMN pause_reason text,
  ADD COLUMN created_by_id text,
  ADD COLUMN created_by_name text,
  -- When the last `progress` event was emitted, by any replica (at most ~1/s).
  ADD COLUMN progress_at timestamptz;
ALTER TABLE rollouts ALTER COLUMN config DROP NOT NULL;
ALTER TABLE rollouts ADD CONSTRAINT rollouts_payload_check
  CHECK ((kind = 'config' AND config IS NOT NULL AND command IS NULL) OR (kind = 'command' AND command IS NOT NULL AND config IS NULL));
CREATE INDEX rollouts_created_idx ON rollouts (created_at, id);

-- command_id: the command a command rollout created for the target (no
-- foreign key: commands go only with their device, which takes the target
-- along). outcome: what the device reported about the config version the
-- rollout gave it (config rollouts; commands keep their own status).
ALTER TABLE rollout_targets
  ADD COLUMN command_id uuid,
  ADD COLUMN outcome text CHECK (outcome IN ('applied', 'failed'));
UPDATE rollout_targets t SET outcome = 'applied'
  FROM device_configs c
 WHERE c.device_id = t.device_id AND t.version IS NOT NULL AND c.reported_version >= t.version;
-- A device's report finds its targets through this; deleting a device
-- (cascade) no longer scans every target of every rollout.
CREATE INDEX rollout_targets_device_idx ON rollout_targets (device_id);
