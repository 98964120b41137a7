// Memory soak of the console (issue 14), not part of the default `npm test`
// (its own ava configuration, test/soak/ava.config.mjs): `npm run test:soak`. A device page stays open for
// SOAK_MINUTES (default 10) while its device publishes 10 readings a second;
// every 30 s the page's JS heap is measured after a forced GC (CDP
// HeapProfiler.collectGarbage + Performance.getMetrics JSHeapUsedSize). After
// a 2-minute warm-up the heap must stay flat: the last minute's mean is at
// most 1.3 × the first sample after warm-up.
//   npm run test:soak     (SOAK_MINUTES=3 npm run test:soak for a short run)
import test from 'ava'
import { setTimeout as sleep } from 'node:timers/promises'
import { startTestBroker, api, connectDevice, TEST_ADMIN_TOKEN } from '../helpers/broker.js'
import { launchBrowser, openPage, signIn } from '../console/browser.js'

const MINUTES = Number(process.env.SOAK_MINUTES ?? 10)
if (!(MINUTES >= 3)) throw new Error(`SOAK_MINUTES must be at least 3 (2 minutes of warm-up, then at least one to compare), got ${process.env.SOAK_MINUTES}`)
const SAMPLE_MS = 30_000
const WARMUP_MS = 2 * 60_000

test('the device page keeps a flat JS heap while its device publishes 10 readings/s', async (t) => {
  t.timeout((MINUTES + 3) * 60_000)
  const broker = await startTestBroker()
  const browser = await launchBrowser()
  let timer: NodeJS.Timeout | undefined
  try {
    const id = 'soak-sensor-1'
    const { body } = await api(broker.app, 'POST', '/v1/devices', { id })
    const device = await connectDevice(broker.url, id, body.secret)
    let sent = 0
    timer = setInterval(() => {
      sent++
      void device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ temp: 20 + Math.sin(sent / 50), humidity: 50 + (sent % 10), env: { pressure: 1013 } }), { qos: 1 }).catch(() => {})
    }, 100)
    const p = await openPage(browser)
    await signIn(p.page, `http://127.0.0.1:${broker.app.httpPort}`, TEST_ADMIN_TOKEN)
    await p.page.goto(`http://127.0.0.1:${broker.app.httpPort}/console/#/devices/${id}`)
    await p.page.getByText('● live').waitFor()
    const cdp = await p.page.context().newCDPSession(p.page)
    await cdp.send('Performance.enable')
    const heap = async () => {
      await cdp.send('HeapProfiler.collectGarbage')
      const { metrics } = await cdp.send('Performance.getMetrics')
      return metrics.find((m) => m.name === 'JSHeapUsedSize')!.value
    }
    const samples: Array<{ s: number, mb: number, rows: number }> = []
    const start = Date.now()
    while (Date.now() - start < MINUTES * 60_000) {
      await sleep(SAMPLE_MS)
      const mb = (await heap()) / 1024 / 1024
      const rows = await p.page.locator('table.readings tbody tr').count()
      samples.push({ s: Math.round((Date.now() - start) / 1000), mb: +mb.toFixed(2), rows })
      t.log(`${samples.at(-1)!.s} s: JS heap ${samples.at(-1)!.mb} MB, ${sent} readings sent`)
    }
    const points = await p.page.evaluate(() => (document.querySelector('.chart') as HTMLElement).dataset.points)
    const afterWarmup = samples.find((x) => x.s * 1000 >= WARMUP_MS)!
    const lastMinute = samples.filter((x) => x.s >= samples.at(-1)!.s - 60)
    const lastMean = lastMinute.reduce((a, x) => a + x.mb, 0) / lastMinute.length
    t.log(`readings sent: ${sent}; chart points held: ${points}; first after warm-up ${afterWarmup.mb} MB at ${afterWarmup.s} s; last minute mean ${lastMean.toFixed(2)} MB; max ${Math.max(...samples.map((x) => x.mb))} MB`)
    t.true(lastMean <= afterWarmup.mb * 1.3, `heap grew: ${afterWarmup.mb} MB → ${lastMean.toFixed(2)} MB`)
    t.deepEqual(p.errors, [])
    t.true(sent >= MINUTES * 60 * 10 * 0.9, 'the device kept publishing 10 readings/s')
    device.end(true)
  } finally {
    clearInterval(timer)
    await browser.close()
    await broker.close()
    await broker.db.drop()
  }
})
