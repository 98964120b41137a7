// PostgreSQL needs its port up front (no "any free port"). When the port is
// held by something else — a port picked free, then taken by a test's broker
// on port 0 before the postmaster bound it — the start must end with the
// reason, not hang on a connection the other listener accepts and never
// answers; a port it picked itself it picks again.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '../../broker/logger.js'
import { startEmbeddedPostgres } from '../../broker/embedded-postgres.js'

test('a given port held by a listener that never answers: start-up fails with "Address already in use", in bounded time', async (t) => {
  t.timeout(120_000)
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-pg-port-'))
  const sockets: Socket[] = []
  const squatter = createServer((s) => { sockets.push(s) }) // accepts, never answers
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => squatter.close(() => resolve()))
    await rm(dir, { recursive: true, force: true })
  })
  const log = createLogger({ level: 'silent' })
  const { port } = squatter.address() as AddressInfo
  await t.throwsAsync(startEmbeddedPostgres({ dataDir: dir, port, log }), { message: /Address already in use/ })

  // The same data directory without a port: a free one, picked here.
  const db = await startEmbeddedPostgres({ dataDir: dir, log })
  t.teardown(() => db.stop())
  t.not(db.port, port)
})
