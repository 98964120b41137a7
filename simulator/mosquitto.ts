// Starts Eclipse Mosquitto (Debian package `mosquitto`) on a free loopback
// port for the baselines of the benchmark suite; undefined when it is not installed.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect } from 'node:net'

export function mosquittoPath (): string | undefined {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) {
    try { execFileSync(p, ['-h'], { stdio: 'ignore' }) } catch (e) { if ((e as { code?: string }).code === 'ENOENT') continue }
    return p
  }
  return undefined
}

/** Its configuration file goes to `dir`. */
export async function startMosquitto (port: number, dir: string): Promise<ChildProcess | undefined> {
  const bin = mosquittoPath()
  if (!bin) return undefined
  const conf = join(dir, 'mosquitto.conf')
  // Same shape as the other brokers: loopback, anonymous, no persistence.
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 100000\nlog_type error\n`)
  const child = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] })
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return child
    await sleep(50)
  }
  child.kill()
  throw new Error('mosquitto did not start')
}
