import test from 'ava'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { parseSimOptions } from '../../simulator/sim-options.js'
import { simulate } from '../../simulator/simulate.js'
import { startTestBroker, TEST_ADMIN_TOKEN, connectDevice, api } from '../helpers/broker.js'

test('a run whose provisioning fails half-way still leaves the secrets it received in --credentials', async (t) => {
  const broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 1_000_000 })
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-credentials-'))
  t.teardown(async () => { await broker.close(); await broker.db.drop(); await rm(dir, { recursive: true, force: true }) })
  // A real failure part-way: PostgreSQL refuses the last device of the
  // request, so the server streams the chunks it committed before, then
  // stops with an error line (the chunk holding half-4000 is rolled back).
  const sql = new pg.Client({ connectionString: broker.db.url })
  await sql.connect()
  await sql.query(`CREATE FUNCTION refuse_half_4000() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.id = 'half-4000' THEN RAISE EXCEPTION 'disk full (test)'; END IF; RETURN NEW; END $$`)
  await sql.query('CREATE TRIGGER refuse_half_4000 BEFORE INSERT ON devices FOR EACH ROW EXECUTE FUNCTION refuse_half_4000()')

  const file = join(dir, 'fleet.ndjson')
  const options = parseSimOptions(['--broker', broker.url, '--api', `http://127.0.0.1:${broker.app.httpPort}`, '--token', TEST_ADMIN_TOKEN, '--quiet',
    '--devices', '4000', '--id-prefix', 'half', '--credentials', file, '--duration', '1'])
  const err = await t.throwsAsync(simulate(options))
  const created = (await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM devices WHERE id LIKE 'half-%'")).rows[0]!.n
  await sql.end()
  t.true(created > 0 && created < 4000, `the server created some devices before it stopped (${created})`)
  t.regex(err.message, new RegExp(`stopped creating devices after ${created} of 4000.*the ${created} devices created are in ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`))

  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string, secret: string })
  t.is(lines.length, created, 'every created device is in the file')
  t.deepEqual(lines.map((l) => l.id), Array.from({ length: created }, (_, i) => `half-${i + 1}`))
  t.is((await stat(file)).mode & 0o777, 0o600, 'readable by its owner only')
  // The secrets are the real ones: the first and the last device authenticate.
  for (const d of [lines[0]!, lines.at(-1)!]) {
    const client = await connectDevice(broker.url, d.id, d.secret)
    await client.endAsync()
  }
  t.is((await api(broker.app, 'GET', `/v1/devices/half-${created + 1}`)).status, 404, 'and nothing after the failure was created')

  // Run again with the same file: it names the shortfall instead of provisioning over it.
  await t.throwsAsync(simulate(options), { message: new RegExp(`holds ${created} devices, fewer than --devices 4000`) })
})
