// `npm run bench:insert` — which insert path should the batch writer use?
// Same rows, same embedded PostgreSQL (durable settings), one connection:
//   copy            COPY … FROM STDIN (text), no deduplication possible
//   unnest-jsonb[]  INSERT … SELECT FROM unnest(…, $5::jsonb[]) ON CONFLICT DO NOTHING
//   unnest-json     INSERT … SELECT FROM ROWS FROM(unnest(…), jsonb_array_elements($5)) ON CONFLICT DO NOTHING (used)
//   unnest-nodedup  the same without the conflict clause (the cost of deduplication)
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { pino } from 'pino'
import { startEmbeddedPostgres } from '../broker/embedded-postgres.js'

const BATCH = Number(process.argv[2] ?? 1000)
const BATCHES = Number(process.argv[3] ?? 40)
const dir = await mkdtemp(join(tmpdir(), 'fleetgate-insert-'))
const db = await startEmbeddedPostgres({ dataDir: dir, log: pino({ level: 'warn' }) })
const c = new pg.Client({ connectionString: db.url })
await c.connect()
const table = 'CREATE TABLE t (device_id text NOT NULL, ts timestamptz NOT NULL, reading_hash bigint NOT NULL, received_at timestamptz NOT NULL, payload jsonb NOT NULL, PRIMARY KEY (device_id, ts, reading_hash))'

let seq = 0
function rows () {
  return Array.from({ length: BATCH }, () => {
    seq++
    return { d: `bench-${seq % 1000}`, t: 1_700_000_000_000 + seq, h: seq.toString(16).padStart(16, '0'), r: Date.now(), p: `{"ts":${1_700_000_000_000 + seq},"seq":${seq},"temp":21.5,"hum":44.1,"note":"say \\"hi\\""}` }
  })
}
type Row = ReturnType<typeof rows>[number]

const paths: Record<string, (b: Row[]) => Promise<unknown>> = {
  copy: (b) => pipeline(Readable.from([b.map((r) => `${r.d}\t${new Date(r.t).toISOString()}\t${BigInt.asIntN(64, BigInt('0x' + r.h))}\t${new Date(r.r).toISOString()}\t${r.p.replace(/\\/g, '\\\\')}\n`).join('')]), c.query(copyFrom('COPY t FROM STDIN'))),
  'unnest-jsonb[]': (b) => c.query({ name: 'a', text: 'INSERT INTO t SELECT d, to_timestamp(t/1000.0), (\'x\'||h)::bit(64)::bigint, to_timestamp(r/1000.0), p FROM unnest($1::text[], $2::float8[], $3::text[], $4::float8[], $5::jsonb[]) AS u(d,t,h,r,p) ON CONFLICT DO NOTHING', values: [b.map((r) => r.d), b.map((r) => r.t), b.map((r) => r.h), b.map((r) => r.r), b.map((r) => r.p)] }),
  'unnest-json': (b) => c.query({ name: 'b', text: 'INSERT INTO t SELECT d, to_timestamp(t/1000.0), (\'x\'||h)::bit(64)::bigint, to_timestamp(r/1000.0), p FROM ROWS FROM (unnest($1::text[]), unnest($2::float8[]), unnest($3::text[]), unnest($4::float8[]), jsonb_array_elements($5::jsonb)) AS u(d,t,h,r,p) ON CONFLICT DO NOTHING', values: [b.map((r) => r.d), b.map((r) => r.t), b.map((r) => r.h), b.map((r) => r.r), '[' + b.map((r) => r.p).join(',') + ']'] }),
  'unnest-nodedup': (b) => c.query({ name: 'c', text: 'INSERT INTO t SELECT d, to_timestamp(t/1000.0), (\'x\'||h)::bit(64)::bigint, to_timestamp(r/1000.0), p FROM ROWS FROM (unnest($1::text[]), unnest($2::float8[]), unnest($3::text[]), unnest($4::float8[]), jsonb_array_elements($5::jsonb)) AS u(d,t,h,r,p)', values: [b.map((r) => r.d), b.map((r) => r.t), b.map((r) => r.h), b.map((r) => r.r), '[' + b.map((r) => r.p).join(',') + ']'] })
}

console.log(`batch ${BATCH} rows × ${BATCHES} batches per path, one connection, fsync on`)
const results: Record<string, number> = {}
for (let round = 0; round < 2; round++) { // round 0 warms up
  for (const [name, run] of Object.entries(paths)) {
    await c.query('DROP TABLE IF EXISTS t'); await c.query(table)
    const batches = Array.from({ length: BATCHES }, rows)
    const t0 = performance.now()
    for (const b of batches) await run(b)
    const rate = Math.round(BATCH * BATCHES / ((performance.now() - t0) / 1000))
    if (round === 1) results[name] = rate
  }
}
const base = results.copy!
for (const [name, rate] of Object.entries(results)) console.log(`${name.padEnd(16)} ${String(rate).padStart(8)} rows/s   ${(rate / base).toFixed(2)} × copy`)
const { writeFile, mkdir } = await import('node:fs/promises')
await mkdir('results', { recursive: true })
await writeFile('results/bench-insert.json', JSON.stringify({ date: new Date().toISOString(), batch: BATCH, batches: BATCHES, rowsPerSecond: results }, null, 2))
await c.end()
await db.stop()
await rm(dir, { recursive: true, force: true })
