// `fleetgate dead-letters ls`: messages the broker kept but could not store
// as telemetry, with their reason (GET /v1/dead-letters).
import type { Command } from 'commander'
import { allPages } from './api-client.js'
import { timeOption } from './args.js'
import { createContext } from './context.js'
import { relativeTime, truncate, type Column } from './output.js'
import { pageOptions } from './limits.js'

interface DeadLetter { id: string | number, deviceId: string | null, topic: string, reason: string, detail: string | null, receivedAt: string, payloadBase64: string }

/** The payload as text when it is printable UTF-8, else its size. */
function payloadText (b64: string): string {
  const bytes = Buffer.from(b64, 'base64')
  const text = bytes.toString('utf8')
  // eslint-disable-next-line no-control-regex
  return !text.includes('\uFFFD') && !/[\x00-\x08\x0e-\x1f]/.test(text) ? text : `(${bytes.length} bytes, binary)`
}

const COLUMNS: Array<Column<DeadLetter>> = [
  { header: 'RECEIVED', value: (d) => relativeTime(d.receivedAt) },
  { header: 'DEVICE', value: (d) => d.deviceId ?? '-', max: 30 },
  { header: 'REASON', value: (d) => d.reason },
  { header: 'DETAIL', value: (d) => d.detail ?? '-', max: 40 },
  { header: 'PAYLOAD', value: (d) => truncate(payloadText(d.payloadBase64), 40) }
]

export function registerDeadLetters (program: Command): void {
  const dl = program.command('dead-letters')
    .description('Messages kept with the reason they were not stored')
    .addHelpText('after', '\nExample:\n  $ fleetgate dead-letters ls --reason invalid_json --from 1h')
  pageOptions(dl.command('ls')
    .alias('list')
    .description('List dead letters, newest first, with counts per reason')
    .option('-d, --device <id>', 'only this device')
    .option('--reason <reason>', 'only this reason, e.g. invalid_json, ts_out_of_window')
    .option('--from <time>', 'received at or after: ISO 8601 or a duration back from now (15m, 2h, 7d)', timeOption('--from'))
    .option('--to <time>', 'received before (same forms)', timeOption('--to')), { defaultLimit: 50 })
    .addHelpText('after', `
Table output ends with the counts per reason (of the whole filter, not only
this page). json prints the API's page, payloads in base64 (payloadBase64).

Examples:
  $ fleetgate dead-letters ls
  $ fleetgate dead-letters ls --device sensor-1 --from 24h -o json | jq -r '.items[].payloadBase64' | base64 -d`)
    .action(async (opts: { device?: string, reason?: string, from?: string, to?: string, limit: number, cursor?: string, all?: boolean }, cmd: Command) => {
      const ctx = createContext(cmd)
      const query = { deviceId: opts.device, reason: opts.reason, from: opts.from, to: opts.to, limit: opts.limit }
      const page = (await ctx.api.request<{ items: DeadLetter[], nextCursor: string | null, countsByReason?: Record<string, number> }>('GET', '/v1/dead-letters', { query: { ...query, cursor: opts.cursor } })).body
      let items = page.items
      let next = page.nextCursor
      if (opts.all && next) {
        items = []
        for await (const d of allPages<DeadLetter>(ctx.api, '/v1/dead-letters', query)) items.push(d)
        next = null
      }
      if (ctx.out.format === 'json') {
        process.stdout.write(JSON.stringify({ ...page, items, nextCursor: next }, null, 2) + '\n')
        return
      }
      ctx.out.list(items, COLUMNS, next)
      const counts = Object.entries(page.countsByReason ?? {})
      if (ctx.out.format === 'table' && counts.length) process.stdout.write(`\nby reason: ${counts.map(([r, n]) => `${r} ${n}`).join(', ')}\n`)
    })
}
