// The heavy fault tests (a database outage under full load, a 10,000-device
// reconnect storm, a QoS 0 flood) each measure rates or memory and each
// saturate this 2-core machine: run side by side (ava runs test files in
// parallel) they would measure each other. They take turns through a lock
// shared by the processes of one `npm test` run (a directory: mkdir is atomic).
import { createHash } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export async function exclusive<T> (name: string, fn: () => Promise<T>): Promise<T> {
  const run = createHash('sha1').update(process.env.FLEETGATE_TEST_ADMIN_URL ?? 'none').digest('hex').slice(0, 12)
  const lock = join(tmpdir(), `fleetgate-test-${run}-${name}.lock`)
  for (;;) {
    try { await mkdir(lock); break } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      await sleep(250)
    }
  }
  try { return await fn() } finally { await rm(lock, { recursive: true, force: true }) }
}
