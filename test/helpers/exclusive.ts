// The heavy fault tests (a database outage under full load, a 10,000-device
// reconnect storm, a QoS 0 flood, MQTT fuzzing) each measure rates or memory
// and each saturate this 2-core machine: run side by side (ava runs test
// files in parallel) they would measure each other. They take turns through
// a lock shared by the processes of one `npm test` run: a directory (mkdir
// is atomic) named after the run's id, holding the owner's pid, so a lock
// left by a killed process is broken instead of waited for.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

export async function exclusive<T> (name: string, fn: () => Promise<T>, { timeoutMs = 200_000 } = {}): Promise<T> {
  const run = process.env.FLEETGATE_TEST_RUN_ID ?? `pid-${process.ppid}`
  const lock = join(tmpdir(), `fleetgate-test-${run}-${name}.lock`)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      await mkdir(lock)
      await writeFile(join(lock, 'pid'), String(process.pid))
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const owner = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => ''))
      if (owner > 0 && !alive(owner)) { await rm(lock, { recursive: true, force: true }); continue }
      if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for the ${name} lock (held by pid ${owner || '?'})`)
      await sleep(250)
    }
  }
  try { return await fn() } finally { await rm(lock, { recursive: true, force: true }) }
}
