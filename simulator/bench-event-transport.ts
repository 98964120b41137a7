// `npm run -s bench:event-transport` — which bus carries the fleet's events
// between replicas (issue 13, broker/fleet/cluster-events.ts)? The two
// candidates, on this machine, with the same events (≈200 bytes of JSON):
//   redis     PUBLISH on one connection, SUBSCRIBE on another (ioredis)
//   postgres  SELECT pg_notify(channel, payload) (each its own transaction,
//             as an event published with its change would be), LISTEN on
//             another connection (pg)
// each with one event per message, and with events batched per message as
// the hub sends them (what one turn of the event loop produced; NOTIFY
// payloads are limited to 8000 bytes, so at most 35 such events there).
// Printed: events/s received by the subscriber, and CPU seconds per million
// events, of this process and of the whole machine (/proc/stat: the Redis or
// PostgreSQL server included). Arguments: [seconds per case, default 5]
// [output file, default results/bench-event-transport.json].
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import pg from 'pg'
import { Redis } from 'ioredis'
import { startBenchEnvironment } from './broker-under-test.js'

const SECONDS = Number(process.argv[2] ?? 5)
const OUT = process.argv[3] ?? 'results/bench-event-transport.json'
const WINDOW = 64 // messages in flight

const event = (i: number) => JSON.stringify({ id: String(i), kind: 'config', type: 'desired', at: new Date().toISOString(), deviceId: `device-${i % 10_000}`, data: { version: i, source: 'rollout', rolloutId: '9f1c2d3e-4b5a-6c7d-8e9f-0a1b2c3d4e5f' } })

async function machineCpuSeconds (): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  const busy = f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!
  return busy / 100
}

interface Result { transport: string, eventsPerMessage: number, eventsPerSecond: number, processCpuSecondsPerMillion: number, machineCpuSecondsPerMillion: number }

async function measure (transport: string, eventsPerMessage: number, send: (payload: string) => Promise<unknown>, onMessage: (fn: (payload: string) => void) => void): Promise<Result> {
  let received = 0
  onMessage((payload) => { received += payload.split('\n').length })
  const payload = Array.from({ length: eventsPerMessage }, (_, i) => event(i)).join('\n')
  const cpu0 = process.cpuUsage(); const m0 = await machineCpuSeconds(); const t0 = performance.now()
  let sent = 0
  const deadline = Date.now() + SECONDS * 1000
  await Promise.all(Array.from({ length: WINDOW }, async () => {
    while (Date.now() < deadline) { await send(payload); sent += eventsPerMessage }
  }))
  const until = Date.now() + 5000
  while (received < sent && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 5))
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0); const m1 = await machineCpuSeconds()
  const perMillion = (s: number) => Math.round(s / received * 1e6 * 10) / 10
  const r = { transport, eventsPerMessage, eventsPerSecond: Math.round(received / seconds), processCpuSecondsPerMillion: perMillion((cpu.user + cpu.system) / 1e6), machineCpuSecondsPerMillion: perMillion(m1 - m0) }
  console.error(`${transport.padEnd(9)} ${String(eventsPerMessage).padStart(3)} events/message: ${r.eventsPerSecond} events/s, CPU ${r.processCpuSecondsPerMillion} s (this process) / ${r.machineCpuSecondsPerMillion} s (machine) per million events`)
  return r
}

async function main () {
  const env = await startBenchEnvironment({ name: 'event-transport' })
  const results: Result[] = []
  try {
    const redisServer = await env.redis()
    for (const n of [1, 35]) {
      const pub = new Redis(redisServer.url); const sub = new Redis(redisServer.url)
      let handler: (p: string) => void = () => {}
      sub.on('message', (_c: string, m: string) => handler(m))
      await sub.subscribe('bench:events')
      results.push(await measure('redis', n, (p) => pub.publish('bench:events', p), (fn) => { handler = fn }))
      pub.disconnect(); sub.disconnect()
    }
    for (const n of [1, 35]) {
      const pool = new pg.Pool({ connectionString: env.databaseUrl, max: 8 })
      const listener = new pg.Client({ connectionString: env.databaseUrl })
      await listener.connect()
      let handler: (p: string) => void = () => {}
      listener.on('notification', (msg) => handler(msg.payload ?? ''))
      await listener.query('LISTEN bench_events')
      results.push(await measure('postgres', n, (p) => pool.query('SELECT pg_notify($1, $2)', ['bench_events', p]), (fn) => { handler = fn }))
      await listener.end(); await pool.end()
    }
  } finally {
    await env.close()
  }
  await mkdir(dirname(OUT), { recursive: true })
  await writeFile(OUT, JSON.stringify({ seconds: SECONDS, results }, null, 2))
  console.log(JSON.stringify(results, null, 2))
}

await main()
