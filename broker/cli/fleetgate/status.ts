// `fleetgate status`: the fleet at a glance, from GET /v1/overview; against
// a broker without it, from /readyz and the device list. Exit 1 when the
// broker is not ready, so a script can wait on it.
import type { Command } from 'commander'
import { allPages, ApiFailure } from './api-client.js'
import { createContext } from './context.js'
import { CliError } from './exit-codes.js'
import { MAX_LIMIT } from './limits.js'

interface Overview {
  devices: { total: number, online: number, offline: number, disabled: number, config?: { inSync: number, pending: number, failed: number } }
  rates?: { connectsPerSecond: number, telemetryStoredPerSecond: number }
  pubackP99Ms?: number | null
  ingest?: { queueRows: number, queueCapacity: number, backpressureSeconds: number }
  deadLetters?: { byReason: Record<string, number> }
  readiness: { ready: boolean, database?: unknown, redis?: unknown, reason?: string }
}

const n = (x: number | undefined | null, digits = 0) => x === undefined || x === null ? '-' : x.toFixed(digits)
const word = (v: unknown) => typeof v === 'string' ? v : v === true ? 'ok' : v === false ? 'down' : v === null || v === undefined ? '-' : JSON.stringify(v)

export function registerStatus (program: Command): void {
  program.command('status')
    .description('The fleet at a glance: readiness, devices online, config sync, ingest rates, dead letters')
    .addHelpText('after', `
Exits 1 when the broker is not ready.

Example:
  $ fleetgate status`)
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      let o: Overview
      try {
        o = (await ctx.api.request<Overview>('GET', '/v1/overview')).body
      } catch (err) {
        if (!(err instanceof ApiFailure) || err.status !== 404) throw err
        // A broker from before /v1/overview: readiness and counts by listing.
        let ready = true; let reason: string | undefined
        try { await ctx.api.request('GET', '/readyz') } catch (e) {
          if (!(e instanceof ApiFailure)) throw e
          ready = false; reason = e.detail
        }
        const devices = { total: 0, online: 0, offline: 0, disabled: 0 }
        for await (const d of allPages<{ online: boolean, disabled: boolean }>(ctx.api, '/v1/devices', { limit: MAX_LIMIT })) {
          devices.total++
          if (d.disabled) devices.disabled++
          if (d.online) devices.online++; else devices.offline++
        }
        o = { devices, readiness: { ready, reason } }
      }
      const d = o.devices
      const rows: Array<[string, string]> = [
        ['ready', o.readiness.ready ? 'yes' : `no${o.readiness.reason ? ` (${o.readiness.reason})` : ''}`],
        ['database', word(o.readiness.database)],
        ['redis', word(o.readiness.redis)],
        ['devices', `${d.total} (${d.online} online, ${d.offline} offline, ${d.disabled} disabled)`]
      ]
      if (d.config) rows.push(['config', `${d.config.inSync} in sync, ${d.config.pending} pending, ${d.config.failed} failed`])
      if (o.rates) rows.push(['rates', `${n(o.rates.telemetryStoredPerSecond, 1)} readings/s stored, ${n(o.rates.connectsPerSecond, 1)} connects/s (this replica)`])
      if (o.pubackP99Ms !== undefined) rows.push(['PUBACK p99', o.pubackP99Ms === null ? '-' : `${n(o.pubackP99Ms, 1)} ms`])
      if (o.ingest) rows.push(['ingest queue', `${o.ingest.queueRows}/${o.ingest.queueCapacity} rows, ${n(o.ingest.backpressureSeconds, 1)} s backpressure`])
      if (o.deadLetters) {
        const byReason = Object.entries(o.deadLetters.byReason)
        rows.push(['dead letters', byReason.length ? byReason.map(([r, c]) => `${r} ${c}`).join(', ') : 'none'])
      }
      ctx.out.record(o, rows.filter(([, v]) => v !== '-'))
      if (!o.readiness.ready) throw new CliError('error: the broker is not ready')
    })
}
