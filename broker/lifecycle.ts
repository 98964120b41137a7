// The one ordered list of what the process has started (DESIGN.md: one
// lifecycle for start-up failure and shutdown). Each component is
// registered once, as soon as it exists, with its name, the phase of the
// shutdown it belongs to and its stop function. A start-up that fails half
// way and a normal shutdown both run the same list: phases in the order
// below, and within a phase the reverse of registration (what started last
// stops first). Each step is logged with its number and duration; a failing
// step is logged and the next one runs. stop() is idempotent.
import type { Logger } from './logger.js'

export const PHASES = [
  'accept', // stop taking new MQTT connections (readiness is already false)
  'drain', // refuse new telemetry, commit what was admitted
  'work', // background work: rollouts, retention, expiry, cluster dispatch
  'connections', // disconnect clients, then leave Redis
  'state', // last presence flush, leave the replica registry
  'serve', // the HTTP server
  'database' // change feed, pool, the embedded PostgreSQL last
] as const
export type Phase = typeof PHASES[number]

export interface Lifecycle {
  add (name: string, phase: Phase, stop: () => Promise<unknown> | void): void
  /** Stops everything registered, in order; resolves when all steps ran. */
  stop (): Promise<void>
}

export function createLifecycle (log: Logger): Lifecycle {
  const parts: Array<{ name: string, phase: Phase, stop: () => Promise<unknown> | void, seq: number }> = []
  let stopping: Promise<void> | undefined
  return {
    add (name, phase, stop) {
      if (stopping) throw new Error(`${name} started while the process is stopping`)
      parts.push({ name, phase, stop, seq: parts.length })
    },
    stop () {
      stopping ??= (async () => {
        const ordered = [...parts].sort((a, b) => PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase) || b.seq - a.seq)
        let order = 0
        for (const p of ordered) {
          const n = ++order
          const t0 = Date.now()
          try {
            await p.stop()
          } catch (err) {
            log.error({ err, step: p.name, order: n }, 'shutdown step failed')
          }
          // Numbered: lines of one millisecond can reach a collector out of order.
          log.info({ step: p.name, phase: p.phase, order: n, ms: Date.now() - t0 }, 'shutdown step done')
        }
      })()
      return stopping
    }
  }
}
