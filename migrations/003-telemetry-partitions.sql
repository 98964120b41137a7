-- Telemetry partitioned by day (issue 5), so retention drops whole
-- partitions instead of deleting rows. Partitions are created ahead and
-- dropped after TELEMETRY_RETENTION_DAYS by broker/telemetry-retention.ts.

-- The UTC calendar day (current_date follows the session's TimeZone).
CREATE FUNCTION fleetgate_utc_today() RETURNS date LANGUAGE sql STABLE AS $$ SELECT (now() AT TIME ZONE 'UTC')::date $$;

ALTER TABLE telemetry RENAME TO telemetry_unpartitioned;
ALTER TABLE telemetry_unpartitioned RENAME CONSTRAINT telemetry_pkey TO telemetry_unpartitioned_pkey;

CREATE TABLE telemetry (
  device_id    text        NOT NULL,
  ts           timestamptz NOT NULL,
  reading_hash bigint      NOT NULL,
  received_at  timestamptz NOT NULL,
  payload      jsonb       NOT NULL,
  -- The primary key (the dedup key) also serves per-device time-range
  -- queries; it includes ts, the partition key, as PostgreSQL requires.
  PRIMARY KEY (device_id, ts, reading_hash)
) PARTITION BY RANGE (ts);

-- Creates the daily partitions telemetry_YYYYMMDD for [first_day, last_day]
-- that do not exist yet; returns how many it created.
CREATE FUNCTION fleetgate_ensure_telemetry_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  d date := first_day;
  created integer := 0;
  name text;
BEGIN
  WHILE d <= last_day LOOP
    name := 'telemetry_' || to_char(d, 'YYYYMMDD');
    IF to_regclass(name) IS NULL THEN
      -- Days are UTC days, whatever the session's TimeZone.
      EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                     name, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
      created := created + 1;
    END IF;
    d := d + 1;
  END LOOP;
  RETURN created;
END $$;

-- Move what was stored before: readings of the last 400 days (and up to two
-- days ahead) into their partitions; anything else is kept as a dead letter
-- (nothing is lost by the migration; the retention task ages it out).
SELECT fleetgate_ensure_telemetry_partitions(
  greatest((SELECT min(ts) AT TIME ZONE 'UTC' FROM telemetry_unpartitioned)::date, fleetgate_utc_today() - 400),
  fleetgate_utc_today() + 3)
WHERE EXISTS (SELECT 1 FROM telemetry_unpartitioned);
SELECT fleetgate_ensure_telemetry_partitions(fleetgate_utc_today() - 1, fleetgate_utc_today() + 3);

INSERT INTO telemetry SELECT * FROM telemetry_unpartitioned
 WHERE ts >= ((fleetgate_utc_today() - 400)::text || ' 00:00:00+00')::timestamptz AND ts < ((fleetgate_utc_today() + 4)::text || ' 00:00:00+00')::timestamptz;
INSERT INTO dead_letters (device_id, topic, payload, reason, detail, received_at)
SELECT device_id, 'devices/' || device_id || '/telemetry', convert_to(payload::text, 'UTF8'), 'ts_out_of_window',
       'moved by migration 003: ts ' || ts::text || ' outside the partitioned range', received_at
  FROM telemetry_unpartitioned
 WHERE ts < ((fleetgate_utc_today() - 400)::text || ' 00:00:00+00')::timestamptz OR ts >= ((fleetgate_utc_today() + 4)::text || ' 00:00:00+00')::timestamptz;
DROP TABLE telemetry_unpartitioned;
