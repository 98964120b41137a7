// `fleetgate config …`: a device's desired and reported configuration
// (/v1/devices/{id}/config), its history and rollback.
import type { Command } from 'commander'
import { allPages } from './api-client.js'
import { integer, parseJsonObject } from './args.js'
import { createContext } from './context.js'
import { jsonText, relativeTime, type Column } from './output.js'
import { MAX_LIMIT } from './limits.js'

interface Version { version: number, config: unknown, updatedAt: string }
interface ConfigState {
  desired: Version | null
  reported: (Version & { status?: string, error?: string | null }) | null
  inSync: boolean
  state?: string
}
interface HistoryItem { version: number, config: unknown, setAt: string, setBy: { id: string | null, name: string } | null, source: string, rolloutId?: string | null }

const path = (id: string) => `/v1/devices/${encodeURIComponent(id)}/config`

const HISTORY_COLUMNS: Array<Column<HistoryItem>> = [
  { header: 'VERSION', value: (h) => String(h.version) },
  { header: 'SET', value: (h) => relativeTime(h.setAt) },
  { header: 'BY', value: (h) => h.setBy?.name ?? '-', max: 24 },
  { header: 'SOURCE', value: (h) => h.source + (h.rolloutId ? ` ${h.rolloutId.slice(0, 8)}` : '') },
  { header: 'CONFIG', value: (h) => jsonText(h.config), max: 70 }
]

export function registerConfig (program: Command): void {
  const config = program.command('config')
    .description('A device\'s configuration: read, set, history, rollback')
    .addHelpText('after', `
Examples:
  $ fleetgate config set sensor-1 '{"intervalSeconds":10}'
  $ fleetgate config get sensor-1
  $ fleetgate config rollback sensor-1 --to 1`)

  config.command('get')
    .description('Desired and reported config, and whether the device applied it')
    .argument('<device>', 'device id')
    .addHelpText('after', '\nExample:\n  $ fleetgate config get sensor-1')
    .action(async (device: string, _opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      const s = (await ctx.api.request<ConfigState>('GET', path(device))).body
      const state = s.state ?? (s.desired === null ? 'none' : s.inSync ? 'in_sync' : 'pending')
      const reported = s.reported
        ? `v${s.reported.version}${s.reported.status ? ` ${s.reported.status}` : ''}${s.reported.error ? `: ${s.reported.error}` : ''} (${relativeTime(s.reported.updatedAt)})`
        : '-'
      ctx.out.record(s, [
        ['state', state],
        ['desired', s.desired ? `v${s.desired.version} (${relativeTime(s.desired.updatedAt)})` : '-'],
        ['config', s.desired ? jsonText(s.desired.config) : '-'],
        ['reported', reported]
      ])
    })

  config.command('set')
    .description('Store a new desired config version and push it to the device (PUT)')
    .argument('<device>', 'device id')
    .argument('<json>', 'the config, a JSON object; @file.json reads a file, @- stdin')
    .option('--if-version <n>', 'only if the desired version is still n (0: none yet); refused with version_conflict otherwise', integer('--if-version', 0, 2_147_483_647))
    .addHelpText('after', `
Prints {version, config, delivered}; delivered is false when the device is
offline (it gets the config when it next subscribes).

Examples:
  $ fleetgate config set sensor-1 '{"intervalSeconds":10}'
  $ fleetgate config set sensor-1 @sensor.json --if-version 3`)
    .action(async (device: string, json: string, opts: { ifVersion?: number }, cmd: Command) => {
      const body = { config: parseJsonObject('<json>', json), ifVersion: opts.ifVersion }
      const ctx = createContext(cmd)
      const r = (await ctx.api.request<{ version: number, config: unknown, delivered: boolean }>('PUT', path(device), { body })).body
      ctx.out.record(r, [['version', String(r.version)], ['config', jsonText(r.config)], ['delivered', r.delivered ? 'yes' : 'no (the device is offline; it gets it when it next subscribes)']])
    })

  config.command('history')
    .description('Every desired version, newest first, with who set it')
    .argument('<device>', 'device id')
    .option('--limit <n>', `versions to show (1–${MAX_LIMIT})`, integer('--limit', 1, MAX_LIMIT), 20)
    .option('--all', 'every version')
    .addHelpText('after', '\nExample:\n  $ fleetgate config history sensor-1 --limit 5')
    .action(async (device: string, opts: { limit: number, all?: boolean }, cmd: Command) => {
      const ctx = createContext(cmd)
      const items: HistoryItem[] = []
      for await (const h of allPages<HistoryItem>(ctx.api, `${path(device)}/history`, { limit: Math.min(opts.limit, MAX_LIMIT) }, opts.all ? Infinity : opts.limit)) items.push(h)
      ctx.out.list(items, HISTORY_COLUMNS)
    })

  config.command('rollback')
    .description('Set a new desired version equal to an earlier one, and push it')
    .argument('<device>', 'device id')
    .requiredOption('--to <version>', 'the earlier version to return to', integer('--to', 1, 2_147_483_647))
    .addHelpText('after', '\nExample:\n  $ fleetgate config rollback sensor-1 --to 2')
    .action(async (device: string, opts: { to: number }, cmd: Command) => {
      const ctx = createContext(cmd)
      const r = (await ctx.api.request<{ version: number, config: unknown, delivered: boolean }>('POST', `${path(device)}/rollback`, { body: { toVersion: opts.to } })).body
      ctx.out.record(r, [['version', `${r.version} (= v${opts.to})`], ['config', jsonText(r.config)], ['delivered', r.delivered ? 'yes' : 'no (the device is offline)']])
    })
}
