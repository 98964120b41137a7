// Device list over a large fleet (issue 14: "the device list over 100,000
// devices returns a page in under 300 ms"): starts a broker on an embedded
// PostgreSQL in a temporary directory, seeds DEVICES devices with one SQL
// INSERT (labels, presence, desired/reported configs in every state), then
// times GET /v1/devices over HTTP with each filter the console offers, first
// pages and a page deep into the cursor. Run: node --import tsx scripts/device-list-bench.ts
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../broker/config.js'
import { createLogger } from '../broker/logger.js'
import { startApp } from '../broker/app.js'

const DEVICES = Number(process.env.DEVICES ?? 100_000)
const RUNS = Number(process.env.RUNS ?? 20)
const TOKEN = 'bench-admin-token-0123456789'
const dir = await mkdtemp(join(tmpdir(), 'fleetgate-list-bench-'))
const app = await startApp(loadConfig({}, { DATA_DIR: dir, HTTP_HOST: '127.0.0.1', HTTP_PORT: 0, MQTT_HOST: '127.0.0.1', MQTT_PORT: 0, ADMIN_TOKEN: TOKEN, API_RATE_LIMIT_PER_MINUTE: 1_000_000 }),
  createLogger({ level: 'warn', destination: process.stderr }), { defaultMetrics: false })
try {
  const t0 = Date.now()
  await app.pool.query(`
    INSERT INTO devices (id, secret_hash, name, labels, online, connected_at, last_seen_at, disabled_at, broker_id)
    SELECT 'sensor-' || lpad(i::text, 6, '0'), 'hmac-sha256$x$y', 'Sensor ' || i,
           jsonb_build_object('site', (ARRAY['berlin','paris','madrid','oslo','lisbon'])[1 + i % 5], 'tier', CASE WHEN i % 10 = 0 THEN 'gateway' ELSE 'edge' END, 'ring', CASE WHEN i % 100 = 0 THEN 'canary' ELSE 'stable' END),
           i % 3 = 0, CASE WHEN i % 3 = 0 THEN now() END, now() - make_interval(secs => i), CASE WHEN i % 500 = 0 THEN now() END,
           CASE WHEN i % 3 = 0 THEN $2 END
      FROM generate_series(1, $1) AS i`, [DEVICES, app.brokerId])
  // Online devices belong to this broker (its registry would set another replica's offline).
  // Configs for 60 %: in sync, pending, and (where migration 007 exists) failed.
  await app.pool.query(`
    INSERT INTO device_configs (device_id, desired_version, desired_config, reported_version, reported_config, reported_at)
    SELECT 'sensor-' || lpad(i::text, 6, '0'), 2, '{"sampleSeconds":10}', CASE WHEN i % 5 = 0 THEN 1 ELSE 2 END, '{"sampleSeconds":10}', now()
      FROM generate_series(1, $1) AS i WHERE i % 5 <> 1 AND i % 5 <> 2`, [DEVICES])
  await app.pool.query(`UPDATE device_configs SET reported_status = CASE WHEN device_id LIKE '%3' THEN 'failed' ELSE 'applied' END,
                                                 reported_error = CASE WHEN device_id LIKE '%3' THEN 'bench' END
                         WHERE reported_version IS NOT NULL`)
  await app.pool.query('ANALYZE devices; ANALYZE device_configs')
  console.log(`seeded ${DEVICES} devices in ${Date.now() - t0} ms`)

  const base = `http://127.0.0.1:${app.httpPort}/v1/devices`
  const get = async (qs: string) => {
    const start = performance.now()
    const res = await fetch(base + qs, { headers: { authorization: `Bearer ${TOKEN}` } })
    const body = await res.json() as { items: unknown[], nextCursor: string | null }
    if (!res.ok) throw new Error(`${qs}: ${res.status} ${JSON.stringify(body)}`)
    return { ms: performance.now() - start, body }
  }
  // A cursor 500 pages in (the last page a person would reach by clicking is far nearer).
  let cursor: string | null = null
  for (let i = 0; i < 50; i++) cursor = (await get(`?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).body.nextCursor
  const cases: Array<[string, string]> = [
    ['no filter, first page', '?limit=50'],
    ['no filter, page 51 (cursor)', `?limit=50&cursor=${encodeURIComponent(cursor!)}`],
    ['selector site=berlin', '?limit=50&selector=site%3Dberlin'],
    ['selector ring=canary,tier=gateway (rare)', '?limit=50&selector=ring%3Dcanary%2Ctier%3Dgateway'],
    ['online=true', '?limit=50&online=true'],
    ['online=false', '?limit=50&online=false'],
    ['configState=pending', '?limit=50&configState=pending'],
    ['configState=failed', '?limit=50&configState=failed'],
    ['configState=none', '?limit=50&configState=none'],
    ['idPrefix=sensor-0999', '?limit=50&idPrefix=sensor-0999'],
    ['selector + online + configState', '?limit=50&selector=site%3Doslo&online=false&configState=in_sync'],
    ['no match (selector site=nowhere)', '?limit=50&selector=site%3Dnowhere']
  ]
  const rows = []
  for (const [name, qs] of cases) {
    await get(qs) // warm
    const times: number[] = []
    let n = 0
    for (let i = 0; i < RUNS; i++) { const r = await get(qs); times.push(r.ms); n = r.body.items.length }
    times.sort((a, b) => a - b)
    rows.push({ case: name, items: n, medianMs: +times[Math.floor(times.length / 2)]!.toFixed(1), p95Ms: +times[Math.ceil(times.length * 0.95) - 1]!.toFixed(1), maxMs: +times.at(-1)!.toFixed(1) })
  }
  console.table(rows)
  const worst = Math.max(...rows.map((r) => r.p95Ms))
  console.log(`worst p95: ${worst} ms (target < 300 ms) over ${DEVICES} devices, ${RUNS} runs each`)
  const ov = performance.now()
  await fetch(`http://127.0.0.1:${app.httpPort}/v1/overview`, { headers: { authorization: `Bearer ${TOKEN}` } })
  console.log(`GET /v1/overview: ${(performance.now() - ov).toFixed(1)} ms`)
} finally {
  await app.close()
  await rm(dir, { recursive: true, force: true })
}
