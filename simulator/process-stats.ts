// Readings of processes on this machine (Linux /proc), shared by the
// benchmark scripts.
import { readdir, readFile } from 'node:fs/promises'
import pg from 'pg'

export function rssMb (pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((s) => Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024, () => 0)
}

export function cpuSeconds (pid: number): Promise<number> {
  return readFile(`/proc/${pid}/stat`, 'utf8').then((s) => {
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  }, () => 0)
}

/**
 * The postmaster of the server behind `databaseUrl`, when it runs on this
 * machine: the parent of the backend serving one connection. Undefined for a
 * server elsewhere (its CPU cannot be read from /proc).
 */
export async function postmasterPid (databaseUrl: string): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const backend = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
    const stat = await readFile(`/proc/${backend}/stat`, 'utf8').catch(() => '')
    if (!stat.includes('(postgres)')) return undefined
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } finally { await client.end() }
}

/**
 * CPU seconds of one PostgreSQL server's processes: its postmaster and the
 * processes it forked (backends, checkpointer, WAL writer…). Only the
 * benchmark's own server counts (issue 15: another PostgreSQL on the same
 * host used to inflate the figure).
 */
export async function postgresCpuSeconds (postmaster: number): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    if (!stat.includes('(postgres)')) continue
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pid) !== postmaster && Number(f[1]) !== postmaster) continue
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
