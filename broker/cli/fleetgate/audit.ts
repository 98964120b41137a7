// `fleetgate audit ls`: who changed what, newest first (GET /v1/audit, admin).
import type { Command } from 'commander'
import { allPages } from './api-client.js'
import { timeOption } from './args.js'
import { createContext } from './context.js'
import { isoSeconds, jsonText, type Column } from './output.js'
import { pageOptions } from './limits.js'

interface AuditEntry {
  id: string | number
  at: string
  actor: { id: string | null, name: string }
  action: string
  target: { type: string, id: string | null }
  requestId: string | null
  before: unknown
  after: unknown
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** What changed, short: the fields that differ (`name: "a" → "b"`) for an update, else the after (or before) summary. */
export function change (a: AuditEntry): string {
  if (isObject(a.before) && isObject(a.after)) {
    const before = a.before
    const after = a.after
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
    if (keys.length) return keys.map((k) => `${k}: ${jsonText(before[k])} → ${jsonText(after[k])}`).join(', ')
  }
  if (a.after !== null && a.after !== undefined) return jsonText(a.after)
  if (a.before !== null && a.before !== undefined) return `was ${jsonText(a.before)}`
  return '-'
}

const COLUMNS: Array<Column<AuditEntry>> = [
  { header: 'AT', value: (a) => isoSeconds(a.at) },
  { header: 'ACTOR', value: (a) => a.actor.name, max: 20 },
  { header: 'ACTION', value: (a) => a.action },
  { header: 'TARGET', value: (a) => `${a.target.type}${a.target.id ? ` ${a.target.id}` : ''}`, max: 40 },
  { header: 'CHANGE', value: change, max: 60 }
]

export function registerAudit (program: Command): void {
  const audit = program.command('audit')
    .description('The audit trail: every change made through the API, by whom (admin token)')
    .addHelpText('after', '\nExample:\n  $ fleetgate audit ls --action device.delete --from 7d')
  pageOptions(audit.command('ls')
    .alias('list')
    .description('List audit entries, newest first')
    .option('--actor <tokenId>', 'only changes made with this token id')
    .option('--action <action>', 'only this action, e.g. device.delete, config.set, rollout.pause')
    .option('--target-type <type>', 'only targets of this type: device, rollout, command, token')
    .option('--target <id>', 'only this target id (e.g. a device id)')
    .option('--from <time>', 'at or after: ISO 8601 or a duration back from now (15m, 2h, 7d)', timeOption('--from'))
    .option('--to <time>', 'before (same forms)', timeOption('--to')), { defaultLimit: 50 })
    .addHelpText('after', `
Examples:
  $ fleetgate audit ls
  $ fleetgate audit ls --target-type device --target sensor-1
  $ fleetgate audit ls --action token.create --all -o ndjson`)
    .action(async (opts: { actor?: string, action?: string, targetType?: string, target?: string, from?: string, to?: string, limit: number, cursor?: string, all?: boolean }, cmd: Command) => {
      const ctx = createContext(cmd)
      const query = { actor: opts.actor, action: opts.action, targetType: opts.targetType, targetId: opts.target, from: opts.from, to: opts.to, limit: opts.limit }
      if (opts.all) {
        const items: AuditEntry[] = []
        for await (const a of allPages<AuditEntry>(ctx.api, '/v1/audit', query)) items.push(a)
        ctx.out.list(items, COLUMNS)
      } else {
        const page = (await ctx.api.request<{ items: AuditEntry[], nextCursor: string | null }>('GET', '/v1/audit', { query: { ...query, cursor: opts.cursor } })).body
        ctx.out.list(page.items, COLUMNS, page.nextCursor)
      }
    })
}
