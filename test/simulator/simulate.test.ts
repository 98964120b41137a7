import test from 'ava'
import { parseSimOptions } from '../../simulator/sim-options.js'
import { simulate } from '../../simulator/simulate.js'
import { startTestBroker, TEST_ADMIN_TOKEN, api } from '../helpers/broker.js'
import { createTestDatabase } from '../helpers/database.js'
import { waitFor } from '../helpers/wait.js'

const base = (b: { url: string, app: { httpPort: number } }, extra: string[] = []) => parseSimOptions([
  '--broker', b.url, '--api', `http://127.0.0.1:${b.app.httpPort}`, '--token', TEST_ADMIN_TOKEN, '--quiet', ...extra
])

test('flag errors name the flag', (t) => {
  const bad: Array<[string[], RegExp]> = [
    [['--devices', 'ten', '--no-provision'], /--devices must be an integer/],
    [['--broker', 'http://x', '--no-provision'], /--broker must be mqtt:\/\//],
    [['--qos', '2', '--no-provision'], /--qos must be an integer from 0 to 1/],
    [['--api', 'http://127.0.0.1:1'], /--api needs --token/],
    [[], /give --api and --token to provision devices/],
    [['--verify', '--no-provision'], /--verify reads telemetry back through the API/],
    [['--interval', '10', '--rate', '5', '--no-provision'], /--interval or --rate, not both/],
    [['--jitter', '2', '--no-provision'], /--jitter must be a number from 0 to 1/],
    [['--protocol', '3', '--no-provision'], /--protocol must be 4 \(MQTT 3\.1\.1\) or 5/],
    [['--protocol', 'v5', '--no-provision'], /--protocol must be 4/],
    [['--bogus'], /Unknown option '--bogus'/]
  ]
  for (const [argv, re] of bad) t.throws(() => parseSimOptions(argv), { message: re }, argv.join(' '))
  t.is(parseSimOptions(['--no-provision', '--rate', '4']).intervalMs, 250)
  t.is(parseSimOptions(['--no-provision']).protocolVersion, 4)
  t.is(parseSimOptions(['--no-provision', '--protocol', '5']).protocolVersion, 5)
})

test('a small fleet connects, its telemetry lands, config and commands round-trip, and --verify finds nothing lost or duplicated', async (t) => {
  const broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 1_000_000 })
  t.teardown(async () => { await broker.close(); await broker.db.drop() })
  const summary = await simulate(base(broker, ['--devices', '50', '--ramp', '200', '--interval', '200', '--duration', '4', '--probe-every', '0.5', '--verify', '--id-prefix', 'small', '--readings', '2']))
  t.log(JSON.stringify(summary))
  t.is(summary.connect.connected, 50)
  t.true(summary.messages.acked > 200, `acked ${summary.messages.acked}`)
  t.true(summary.configRoundTrip.count >= 2, 'config round trips measured')
  t.true(summary.commandRoundTrip.count >= 2, 'command round trips measured')
  t.deepEqual(summary.errors, {})
  t.is(summary.verify!.checkedDevices, 50)
  t.is(summary.verify!.acknowledged, summary.messages.acked * 2)
  t.is(summary.verify!.lost, 0)
  t.is(summary.verify!.duplicated, 0)
  const dev = await api(broker.app, 'GET', '/v1/devices/small-1/telemetry?limit=1')
  t.is(dev.body.items.length, 1)
})

test('an MQTT 5 fleet: telemetry through a topic alias, commands answered through the Response Topic, nothing lost or duplicated', async (t) => {
  const broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 1_000_000 })
  t.teardown(async () => { await broker.close(); await broker.db.drop() })
  const summary = await simulate(base(broker, ['--protocol', '5', '--devices', '30', '--ramp', '200', '--interval', '200', '--duration', '4', '--probe-every', '0.5', '--verify', '--id-prefix', 'v5']))
  t.log(JSON.stringify(summary))
  t.is(summary.protocolVersion, 5)
  t.is(summary.connect.connected, 30)
  t.true(summary.messages.acked > 150, `acked ${summary.messages.acked}`)
  t.true(summary.configRoundTrip.count >= 2, 'config round trips measured')
  t.true(summary.commandRoundTrip.count >= 2, 'command round trips measured')
  // A bad alias would be DISCONNECT 0x94 (errors.disconnected); a command without a Response Topic, no_response_topic.
  t.deepEqual(summary.errors, {})
  t.is(summary.verify!.checkedDevices, 30)
  t.is(summary.verify!.acknowledged, summary.messages.acked)
  t.is(summary.verify!.lost, 0)
  t.is(summary.verify!.duplicated, 0)
  // Aliased telemetry is stored under its real topic.
  const dev = await api(broker.app, 'GET', '/v1/devices/v5-1/telemetry?limit=1')
  t.is(dev.body.items.length, 1)
})

test('a broker restart mid-run is survived: devices reconnect and every acknowledged reading is stored once', async (t) => {
  const db = await createTestDatabase()
  let broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 1_000_000 }, db)
  t.teardown(async () => { await broker.close(); await db.drop() })
  const { mqttPort, httpPort } = broker.app
  const run = simulate(base(broker, ['--devices', '20', '--interval', '100', '--duration', '20', '--probe-every', '0', '--verify', '--id-prefix', 'restart']))
  // Restarted once the whole fleet is connected and publishing (on a loaded
  // machine provisioning and the ramp can take longer than a fixed delay).
  await waitFor(() => broker.app.mqtt.connectedDeviceIds().length === 20, { timeoutMs: 30_000, what: '20 devices connected' })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await broker.close()
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 1_000_000, MQTT_PORT: mqttPort, HTTP_PORT: httpPort }, db)
  // The devices come back through their backoff (full jitter, 0.5 s doubling):
  // after an outage of a few seconds on a loaded machine a retry can be 8 s
  // away, so the run lasts long enough for the slowest to return.
  const restarted = broker
  await waitFor(() => restarted.app.mqtt.connectedDeviceIds().length === 20, { timeoutMs: 18_000, what: '20 devices connected again' })
  const summary = await run
  t.log(JSON.stringify({ connect: summary.connect, errors: summary.errors, acked: summary.messages.acked }))
  t.true((summary.errors.disconnected ?? 0) >= 20, 'every device lost its connection')
  t.true(summary.connect.connected >= 40, 'and connected again')
  t.true(summary.messages.acked > 300)
  t.is(summary.verify!.lost, 0)
  t.is(summary.verify!.duplicated, 0)
})
