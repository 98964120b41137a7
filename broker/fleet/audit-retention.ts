// Audit retention (issue 13: "Audit entries follow a retention setting"):
// entries older than AUDIT_RETENTION_DAYS are deleted at start-up and every
// `intervalMs`, in batches (each its own short statement, so a backlog after
// lowering the setting never runs into the statement timeout or holds locks
// for long). Several replicas may run it at once: a DELETE of rows already
// gone by another replica deletes nothing, so no lock is needed.
import type { AuditStore } from '../../devices/audit-store.js'
import type { Logger } from '../logger.js'
import { every } from '../periodic.js'

export interface AuditRetention {
  /** Trims now (or joins the run in flight); resolves with the number of entries deleted. */
  run (): Promise<number>
  close (): Promise<void>
}

export function createAuditRetention (opts: { audit: AuditStore, retentionDays: number, intervalMs: number, log: Logger, batch?: number }): AuditRetention {
  const batch = opts.batch ?? 5000
  const loop = every(async () => {
    let deleted = 0
    for (;;) {
      const n = await opts.audit.trim(opts.retentionDays, batch)
      deleted += n
      if (n < batch) break
    }
    if (deleted > 0) opts.log.info({ deleted, retentionDays: opts.retentionDays }, 'audit retention')
    return deleted
  }, {
    intervalMs: opts.intervalMs,
    onError: (err) => opts.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'audit retention failed; will retry')
  })
  return { run: () => loop.runNow(), close: () => loop.close() }
}
