// Issue 7, fault test 1: PostgreSQL stops for 10 s while devices publish at
// QoS 1, then starts again. The broker (its own process, so its memory can
// be read) must: report not ready during the outage, keep its memory under a
// stated bound (backpressure, not buffering), get back to its previous
// ingest rate within 10 s of the database's return, and in the end have
// stored every acknowledged reading exactly once.
import test from 'ava'
import { exclusive } from '../helpers/exclusive.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLogger } from '../../broker/logger.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../broker/embedded-postgres.js'
import { startBrokerProcess } from '../helpers/broker-process.js'
import { startQos1Load, storedReadings, type Qos1Load } from '../helpers/qos1-load.js'
import { T0 } from '../helpers/time.js'

const DEVICES = 40
const WINDOW = 50 // unacknowledged messages per device
const OUTAGE_MS = 10_000
const MEMORY_BOUND_MB = 150 // growth of the broker's RSS over its level before the outage

async function rssMb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024
}

test('a 10 s PostgreSQL outage under QoS 1 load: not ready, bounded memory, recovery within 10 s, every acknowledged reading stored once', async (t) => {
  t.timeout(240_000) // it may first wait for the other heavy fault tests
  await exclusive('heavy-fault-test', async () => {
    const log = createLogger({ level: 'silent' })
    const dir = await mkdtemp(join(tmpdir(), 'fleetgate-outage-'))
    const settings = { fsync: 'off', synchronous_commit: 'off' }
    let db: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir: dir, log, settings })
    // The server comes back on the same port: the broker's DATABASE_URL names it.
    const port = db.port
    const broker = await startBrokerProcess({ DATABASE_URL: db.url, DEVICE_PUBLISH_MESSAGES_PER_SECOND: '1000000', DEVICE_PUBLISH_BYTES_PER_SECOND: '1073741824' })
    let load: Qos1Load | undefined
    t.teardown(async () => {
      await load?.stop()
      await broker.kill('SIGKILL')
      await db.stop()
      await rm(dir, { recursive: true, force: true })
    })
    await broker.ready()

    const creds = await broker.api('POST', '/v1/devices/bulk', { count: DEVICES, idPrefix: 'outage' })
    t.is(creds.status, 200, JSON.stringify(creds.body).slice(0, 200))
    const secrets = String(creds.body).trim().split('\n').map((l) => JSON.parse(l) as { id: string, secret: string })
    load = await startQos1Load(broker.mqttUrl, secrets, { window: WINDOW, reconnectPeriod: 500, payload: (n) => ({ ts: T0 - n, n, v: Math.random() }) })
    const { acked, ackTimes } = load
    const rate = (from: number, to: number) => ackTimes.filter((x) => x >= from && x < to).length / ((to - from) / 1000)

    // Steady state first.
    await sleep(3000)
    const before = rate(Date.now() - 2000, Date.now())
    const rssBefore = await rssMb(broker.proc.pid!)
    t.log(`before: ${Math.round(before)} acknowledged/s, broker RSS ${rssBefore.toFixed(0)} MB`)
    t.true(before > 500, 'the load is real')

    // Outage.
    await db.stop()
    const outageStart = Date.now()
    let notReadySeen: string | undefined
    let rssMax = rssBefore
    let ackedDuringOutage = 0
    const ackedAtStop = ackTimes.length
    while (Date.now() - outageStart < OUTAGE_MS) {
      notReadySeen ??= await broker.notReadyReason()
      rssMax = Math.max(rssMax, await rssMb(broker.proc.pid!))
      await sleep(200)
    }
    ackedDuringOutage = ackTimes.length - ackedAtStop
    t.truthy(notReadySeen, '/readyz answered 503 during the outage')
    t.log(`outage: not ready ("${notReadySeen}"), max RSS ${rssMax.toFixed(0)} MB, ${ackedDuringOutage} acknowledgements (those committed just before the stop)`)
    t.true(rssMax - rssBefore < MEMORY_BOUND_MB, `RSS grew ${(rssMax - rssBefore).toFixed(0)} MB (bound ${MEMORY_BOUND_MB} MB)`)

    // Recovery.
    db = await startEmbeddedPostgres({ dataDir: dir, port, log, settings })
    const back = Date.now()
    await broker.ready(15_000)
    let recoveredAfter: number | undefined
    for (let s = 1; s <= 12 && recoveredAfter === undefined; s++) {
      await sleep(Math.max(0, back + s * 1000 - Date.now()))
      if (rate(back + (s - 1) * 1000, back + s * 1000) >= 0.8 * before) recoveredAfter = s
    }
    t.log(`ingest back to ≥ 80% of its earlier rate within ${recoveredAfter ?? '>12'} s of PostgreSQL's return`)
    t.truthy(recoveredAfter !== undefined && recoveredAfter <= 10, 'recovered within 10 s')

    await load.stop()
    load = undefined
    const { copies: stored, duplicated } = await storedReadings(db.url)
    t.deepEqual([...acked].filter((k) => !stored.has(k)), [], 'every acknowledged reading is stored')
    t.deepEqual(duplicated, [], 'none twice')
    t.log(`${acked.size} acknowledged, ${stored.size} stored`)
  })
})
