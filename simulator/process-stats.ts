// Readings of processes on this machine (Linux /proc), shared by the
// benchmark scripts.
import { readdir, readFile } from 'node:fs/promises'

export function rssMb (pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((s) => Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024, () => 0)
}

export function cpuSeconds (pid: number): Promise<number> {
  return readFile(`/proc/${pid}/stat`, 'utf8').then((s) => {
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  }, () => 0)
}

/** CPU seconds per PostgreSQL process on the machine (the benchmark's own server). */
export async function postgresCpuSeconds (): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    if (!stat.includes('(postgres)')) continue
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    out.set(pid, (Number(f[11]) + Number(f[12])) / 100)
  }
  return out
}

/** CPU used between two snapshots; a process that is new counts from zero, one that ended is lost. */
export function cpuDelta (a: Map<string, number>, b: Map<string, number>): number {
  let total = 0
  for (const [pid, t] of b) total += t - (a.get(pid) ?? 0)
  return total
}
