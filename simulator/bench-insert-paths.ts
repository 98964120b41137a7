// `npm run bench:insert` — which insert path should the batch writer use?
// Same rows, into the real telemetry table (the SQL files of migrations/,
// applied in order: daily partitions, the dedup primary key), on the same
// embedded PostgreSQL (durable settings), over one connection:
//   copy            COPY telemetry FROM STDIN (text), no deduplication possible
//   unnest-jsonb[]  INSERT … SELECT FROM unnest(…, $5::jsonb[]) ON CONFLICT DO NOTHING
//   unnest-json     the sink itself (broker/ingest/telemetry-sink.ts, used):
//                   INSERT … SELECT FROM ROWS FROM (unnest(…), jsonb_array_elements($5)) ON CONFLICT DO NOTHING
//   unnest-nodedup  the same without the conflict clause (the cost of deduplication)
// The path in use runs through createTelemetrySink(), rows made with the
// decoder's readingHash(), so the figure cannot drift from what the broker
// does; the other three are the alternatives it was chosen against, written
// out here. Benchmarks of an internal path are the one place in simulator/
// that may import broker internals: the sink keeps its SQL private, and
// reaching it through the sink is the point.
// Arguments: [batch rows, default 1000] [batches, default 40] [output file,
// default results/bench-insert.json].
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { pino } from 'pino'
import { createTelemetrySink, type ReadingRow } from '../broker/ingest/telemetry-sink.js'
import { readingHash } from '../broker/ingest/telemetry-decoder.js'
import { applyMigrationFiles, startBenchEnvironment } from './broker-under-test.js'
import { tableRows } from './committed-rows.js'

const BATCH = Number(process.argv[2] ?? 1000)
const BATCHES = Number(process.argv[3] ?? 40)
const OUT = process.argv[4] ?? 'results/bench-insert.json'
// Readings of the last hour: inside the partitions the migrations create (yesterday to three days ahead, UTC).
const T_BASE = Date.now() - 3_600_000

let seq = 0
function rows (): ReadingRow[] {
  return Array.from({ length: BATCH }, () => {
    seq++
    const ts = T_BASE + seq
    const json = `{"ts":${ts},"seq":${seq},"temp":21.5,"hum":44.1,"note":"say \\"hi\\""}`
    return { kind: 'reading', deviceId: `bench-${seq % 1000}`, ts, hash: readingHash(json), receivedAt: Date.now(), json }
  })
}

const env = await startBenchEnvironment({ name: 'insert' })
try {
  const migrations = await applyMigrationFiles(env.databaseUrl)
  const pool = new pg.Pool({ connectionString: env.databaseUrl, max: 1 })
  const sink = createTelemetrySink(pool, pino({ level: 'warn' }))
  const columns = (b: ReadingRow[]) => [b.map((r) => r.deviceId), b.map((r) => r.ts), b.map((r) => r.hash), b.map((r) => r.receivedAt)]
  const paths: Record<string, (b: ReadingRow[]) => Promise<unknown>> = {
    copy: async (b) => {
      const c = await pool.connect()
      try {
        const text = b.map((r) => `${r.deviceId}\t${new Date(r.ts).toISOString()}\t${BigInt.asIntN(64, BigInt('0x' + r.hash))}\t${new Date(r.receivedAt).toISOString()}\t${r.json.replace(/\\/g, '\\\\')}\n`).join('')
        await pipeline(Readable.from([text]), c.query(copyFrom('COPY telemetry (device_id, ts, reading_hash, received_at, payload) FROM STDIN')))
      } finally { c.release() }
    },
    'unnest-jsonb[]': (b) => pool.query({ name: 'bench_jsonb_array', text: 'INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload) SELECT d, to_timestamp(t / 1000.0), (\'x\' || h)::bit(64)::bigint, to_timestamp(r / 1000.0), p FROM unnest($1::text[], $2::float8[], $3::text[], $4::float8[], $5::jsonb[]) AS u(d, t, h, r, p) ON CONFLICT DO NOTHING', values: [...columns(b), b.map((r) => r.json)] }),
    'unnest-json': (b) => sink.write(b),
    'unnest-nodedup': (b) => pool.query({ name: 'bench_nodedup', text: 'INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload) SELECT d, to_timestamp(t / 1000.0), (\'x\' || h)::bit(64)::bigint, to_timestamp(r / 1000.0), p FROM ROWS FROM (unnest($1::text[]), unnest($2::float8[]), unnest($3::text[]), unnest($4::float8[]), jsonb_array_elements($5::jsonb)) AS u(d, t, h, r, p)', values: [...columns(b), '[' + b.map((r) => r.json).join(',') + ']'] })
  }

  console.log(`batch ${BATCH} rows × ${BATCHES} batches per path, one connection, fsync on, schema from ${migrations.length} migrations`)
  const results: Record<string, number> = {}
  for (let round = 0; round < 2; round++) { // round 0 warms up
    for (const [name, run] of Object.entries(paths)) {
      await pool.query('TRUNCATE telemetry')
      const batches = Array.from({ length: BATCHES }, rows)
      const t0 = performance.now()
      for (const b of batches) await run(b)
      const rate = Math.round(BATCH * BATCHES / ((performance.now() - t0) / 1000))
      if (round === 1) results[name] = rate
    }
  }
  const stored = await tableRows(pool)()
  if (stored !== BATCH * BATCHES) throw new Error(`the last path stored ${stored} rows of ${BATCH * BATCHES}`)
  await pool.end()
  const base = results.copy!
  for (const [name, rate] of Object.entries(results)) console.log(`${name.padEnd(16)} ${String(rate).padStart(8)} rows/s   ${(rate / base).toFixed(2)} × copy`)
  await mkdir(dirname(OUT), { recursive: true })
  await writeFile(OUT, JSON.stringify({ date: new Date().toISOString(), batch: BATCH, batches: BATCHES, rowsPerSecond: results }, null, 2))
} finally {
  await env.close()
}
