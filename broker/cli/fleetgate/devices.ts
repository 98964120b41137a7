// `fleetgate devices …`: the registry through /v1/devices. Bulk forms
// (several ids, or --selector) of disable, enable and delete go through
// POST /v1/devices/bulk-actions as one audited change.
import type { Command } from 'commander'
import { allPages } from './api-client.js'
import { collect, collectLabel, integer, oneOf, parseSelector } from './args.js'
import { confirm } from './confirm.js'
import { createContext, type Context } from './context.js'
import { CliError, UsageError } from './exit-codes.js'
import { labelsText, relativeTime, type Column } from './output.js'
import { MAX_LIMIT, pageOptions } from './limits.js'

export interface Device {
  id: string
  name: string | null
  labels: Record<string, string>
  disabled: boolean
  createdAt: string
  updatedAt: string
  online: boolean
  connectedAt: string | null
  lastSeenAt: string | null
  configState?: string
  config: { desiredVersion: number | null, reportedVersion: number | null, inSync: boolean }
}

const CONFIG_STATES = ['none', 'in_sync', 'pending', 'failed'] as const

function configText (d: Device): string {
  const state = d.configState ?? (d.config.desiredVersion === null ? 'none' : d.config.inSync ? 'in_sync' : 'pending')
  if (d.config.desiredVersion === null) return state
  const reported = d.config.reportedVersion === d.config.desiredVersion ? '' : ` (device: ${d.config.reportedVersion === null ? '-' : `v${d.config.reportedVersion}`})`
  return `${state} v${d.config.desiredVersion}${reported}`
}

const statusText = (d: Device) => d.disabled ? 'disabled' : d.online ? 'online' : 'offline'

export const DEVICE_COLUMNS: Array<Column<Device>> = [
  { header: 'ID', value: (d) => d.id, max: 40 },
  { header: 'NAME', value: (d) => d.name || '-', max: 24 },
  { header: 'LABELS', value: (d) => labelsText(d.labels), max: 40 },
  { header: 'STATUS', value: statusText },
  { header: 'CONFIG', value: configText },
  { header: 'LAST SEEN', value: (d) => relativeTime(d.lastSeenAt) }
]

function printDevice (ctx: Context, d: Device): void {
  ctx.out.record(d, [
    ['id', d.id],
    ['name', d.name || '-'],
    ['labels', labelsText(d.labels)],
    ['status', statusText(d)],
    ['connected', d.online ? relativeTime(d.connectedAt) : '-'],
    ['last seen', d.lastSeenAt ? `${relativeTime(d.lastSeenAt)} (${d.lastSeenAt})` : '-'],
    ['config', configText(d)],
    ['created', `${relativeTime(d.createdAt)} (${d.createdAt})`],
    ['updated', `${relativeTime(d.updatedAt)} (${d.updatedAt})`]
  ])
}

function printSecret (ctx: Context, created: { id: string, secret: string }): void {
  ctx.out.record(created, [['id', created.id], ['secret', created.secret]])
  if (ctx.out.format === 'table') ctx.out.note('The secret is shown only now: store it (MQTT client id = username = device id, password = secret).')
}

const path = (id: string) => `/v1/devices/${encodeURIComponent(id)}`

type BulkAction = 'disable' | 'enable' | 'delete'
const PAST: Record<BulkAction, string> = { disable: 'disabled', enable: 'enabled', delete: 'deleted' }

/** disable / enable / delete: one device by PATCH or DELETE, several or a selector by bulk-actions. */
async function act (action: BulkAction, ids: string[], opts: { selector?: string, yes?: boolean }, cmd: Command): Promise<void> {
  if (ids.length > 0 && opts.selector !== undefined) throw new UsageError('--selector: give either device ids or --selector, not both')
  if (ids.length === 0 && opts.selector === undefined) throw new UsageError(`devices ${action}: give one or more device ids, or --selector key=value`)
  const selector = opts.selector !== undefined ? parseSelector('--selector', opts.selector) : undefined
  const ctx = createContext(cmd)

  if (action === 'delete' && !opts.yes) {
    if (!ctx.interactive) {
      if (selector !== undefined) throw new UsageError('--yes: deleting by --selector without a terminal to confirm on needs --yes')
    } else {
      let what = ids.length === 1 ? `device ${ids[0]}` : `${ids.length} devices`
      if (selector !== undefined) {
        let n = 0
        for await (const _ of allPages(ctx.api, '/v1/devices', { labels: selector, limit: MAX_LIMIT }, 10_000)) n++
        what = `${n === 10_000 ? 'at least 10000' : n} device${n === 1 ? '' : 's'} matching ${selector}`
      }
      if (!await confirm(`Delete ${what}? Their credentials, configs, commands and telemetry go with them.`)) {
        throw new CliError('error: not deleted (answer y to delete, or pass --yes)')
      }
    }
  }

  if (ids.length === 1) {
    const id = ids[0]!
    if (action === 'delete') {
      await ctx.api.request('DELETE', path(id))
      ctx.out.record({ id, deleted: true }, [['deleted', id]])
    } else {
      const d = (await ctx.api.request<Device>('PATCH', path(id), { body: { disabled: action === 'disable' } })).body
      if (ctx.out.format === 'table') ctx.out.record(d, [[PAST[action], d.id]])
      else ctx.out.record(d)
    }
    return
  }
  const body = selector !== undefined ? { action, selector } : { action, ids }
  const r = (await ctx.api.request<{ action: string, matched: number, changed: number }>('POST', '/v1/devices/bulk-actions', { body })).body
  ctx.out.record(r, [[PAST[action], `${r.changed} of ${r.matched} matching device${r.matched === 1 ? '' : 's'}`]])
}

export function registerDevices (program: Command): void {
  const devices = program.command('devices')
    .description('Register, list, change and remove devices')
    .addHelpText('after', `
Examples:
  $ fleetgate devices create sensor-1 --name "Boiler 1" --label site=berlin
  $ fleetgate devices ls --selector site=berlin --online
  $ fleetgate devices disable --selector site=berlin,tier=edge`)

  pageOptions(devices.command('ls')
    .alias('list')
    .description('List devices (GET /v1/devices), ordered by id')
    .option('-l, --selector <selector>', 'label selector, e.g. site=berlin,tier=edge')
    .option('--online', 'only connected devices')
    .option('--offline', 'only devices not connected')
    .option('--config-state <state>', `only devices whose config is ${CONFIG_STATES.join('|')}`, oneOf('--config-state', CONFIG_STATES))
    .option('--id-prefix <prefix>', 'only ids starting with this'), { noun: 'devices', defaultLimit: 100, cursor: 'the page after this cursor (printed after a full page)', all: 'every page, not only the first' })
    .addHelpText('after', `
Examples:
  $ fleetgate devices ls
  $ fleetgate devices ls --selector site=berlin --offline
  $ fleetgate devices ls --config-state failed --all -o ndjson | jq -r .id`)
    .action(async (opts: { selector?: string, online?: boolean, offline?: boolean, configState?: string, idPrefix?: string, limit: number, cursor?: string, all?: boolean }, cmd: Command) => {
      if (opts.online && opts.offline) throw new UsageError('--online: give --online or --offline, not both')
      const query = {
        labels: opts.selector !== undefined ? parseSelector('--selector', opts.selector) : undefined,
        online: opts.online ? true : opts.offline ? false : undefined,
        configState: opts.configState,
        idPrefix: opts.idPrefix,
        limit: opts.limit
      }
      const ctx = createContext(cmd)
      if (opts.all) {
        const items: Device[] = []
        for await (const d of allPages<Device>(ctx.api, '/v1/devices', query)) items.push(d)
        ctx.out.list(items, DEVICE_COLUMNS)
      } else {
        const page = (await ctx.api.request<{ items: Device[], nextCursor: string | null }>('GET', '/v1/devices', { query: { ...query, cursor: opts.cursor } })).body
        ctx.out.list(page.items, DEVICE_COLUMNS, page.nextCursor)
      }
    })

  devices.command('get')
    .description('Show one device: presence, labels, config state')
    .argument('<id>', 'device id')
    .addHelpText('after', '\nExample:\n  $ fleetgate devices get sensor-1')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      printDevice(ctx, (await ctx.api.request<Device>('GET', path(id))).body)
    })

  devices.command('create')
    .description('Register a device and print its secret, once (POST /v1/devices)')
    .argument('[id]', 'device id (default: one is generated)')
    .option('--name <name>', 'display name')
    .option('--label <key=value>', 'a label (repeatable)', collectLabel)
    .option('--count <n>', 'register n devices <prefix>-1 … <prefix>-n (POST /v1/devices/bulk)', integer('--count', 1, 1_000_000))
    .option('--prefix <prefix>', 'id prefix with --count', 'dev')
    .addHelpText('after', `
The secret is printed once, on stdout: the broker keeps only its hash.

Examples:
  $ fleetgate devices create sensor-1 --name "Boiler 1" --label site=berlin
  $ fleetgate devices create --count 100 --prefix sim --label site=lab -o ndjson > sim-secrets.ndjson`)
    .action(async (id: string | undefined, opts: { name?: string, label?: Record<string, string>, count?: number, prefix: string }, cmd: Command) => {
      if (opts.count !== undefined && id !== undefined) throw new UsageError('--count: give a device id or --count with --prefix, not both')
      if (opts.count !== undefined && opts.name !== undefined) throw new UsageError('--name: not with --count (each device would get the same name)')
      const ctx = createContext(cmd)
      if (opts.count === undefined) {
        const created = (await ctx.api.request<{ id: string, secret: string }>('POST', '/v1/devices', { body: { id, name: opts.name, labels: opts.label } })).body
        printSecret(ctx, created)
        return
      }
      const res = await ctx.api.request('POST', '/v1/devices/bulk', { body: { count: opts.count, idPrefix: opts.prefix, labels: opts.label }, raw: true, timeoutMs: 600_000 })
      const lines = res.text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { id: string, secret?: string, error?: string })
      ctx.out.list(lines, [{ header: 'ID', value: (l) => l.id, max: 60 }, { header: 'SECRET', value: (l) => l.secret ?? '-', max: 80 }, { header: 'ERROR', value: (l) => l.error ?? '' }])
      const failed = lines.filter((l) => l.error !== undefined).length
      if (failed > 0) throw new CliError(`error: ${failed} of ${lines.length} devices were not created`)
      if (ctx.out.format === 'table') ctx.out.note('The secrets are shown only now: store them.')
    })

  devices.command('update')
    .description('Change a device\'s name or labels (PATCH /v1/devices/{id})')
    .argument('<id>', 'device id')
    .option('--name <name>', 'new display name')
    .option('--clear-name', 'remove the display name')
    .option('--label <key=value>', 'set a label, keeping the others (repeatable)', collectLabel)
    .option('--remove-label <key>', 'remove a label (repeatable)', collect)
    .option('--replace-labels', 'the device gets exactly the --label labels given')
    .addHelpText('after', `
Examples:
  $ fleetgate devices update sensor-1 --name "Boiler 2" --label tier=edge
  $ fleetgate devices update sensor-1 --remove-label tier
  $ fleetgate devices update sensor-1 --replace-labels --label site=paris`)
    .action(async (id: string, opts: { name?: string, clearName?: boolean, label?: Record<string, string>, removeLabel?: string[], replaceLabels?: boolean }, cmd: Command) => {
      if (opts.name !== undefined && opts.clearName) throw new UsageError('--clear-name: give --name or --clear-name, not both')
      const labelsChange = opts.label !== undefined || opts.removeLabel !== undefined || opts.replaceLabels
      if (opts.name === undefined && !opts.clearName && !labelsChange) throw new UsageError('devices update: nothing to change; give --name, --clear-name, --label, --remove-label or --replace-labels')
      const ctx = createContext(cmd)
      const body: { name?: string | null, labels?: Record<string, string> } = {}
      if (opts.name !== undefined) body.name = opts.name
      if (opts.clearName) body.name = null
      if (labelsChange) {
        // PATCH replaces the whole label set: start from the device's own.
        const labels = opts.replaceLabels ? {} : { ...(await ctx.api.request<Device>('GET', path(id))).body.labels }
        Object.assign(labels, opts.label)
        for (const k of opts.removeLabel ?? []) delete labels[k]
        body.labels = labels
      }
      printDevice(ctx, (await ctx.api.request<Device>('PATCH', path(id), { body })).body)
    })

  for (const [action, description] of [
    ['disable', 'Disable devices: their connections close and new ones are refused (CONNACK 5)'],
    ['enable', 'Enable disabled devices again'],
    ['delete', 'Delete devices with their credentials, configs, commands and telemetry']
  ] as const) {
    const c = devices.command(action)
      .description(description)
      .argument('[ids...]', 'device ids (several: one bulk action)')
      .option('-l, --selector <selector>', 'every device matching this label selector (POST /v1/devices/bulk-actions)')
    if (action === 'delete') c.option('-y, --yes', 'do not ask for confirmation (needed with --selector when not on a terminal)')
    c.addHelpText('after', `
Examples:
  $ fleetgate devices ${action} sensor-1
  $ fleetgate devices ${action} sensor-1 sensor-2 sensor-3
  $ fleetgate devices ${action} --selector site=berlin,tier=edge${action === 'delete' ? ' --yes' : ''}`)
      .action(async (ids: string[], opts: { selector?: string, yes?: boolean }, cmd: Command) => { await act(action, ids, opts, cmd) })
  }

  devices.command('rotate-secret')
    .description('Give a device a new secret and print it, once; the old one stops working for new connections at once')
    .argument('<id>', 'device id')
    .addHelpText('after', '\nExample:\n  $ fleetgate devices rotate-secret sensor-1')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      printSecret(ctx, (await ctx.api.request<{ id: string, secret: string }>('POST', `${path(id)}/secret`)).body)
    })
}
