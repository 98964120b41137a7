// `fleetgate commands …`: commands sent to one device and followed until
// they finish. `send --wait` holds GET /v1/commands/{id}?waitSeconds= (the
// broker wakes it when the device answers), asking again until --wait runs out.
import type { Command } from 'commander'
import { allPages, type ApiClient } from './api-client.js'
import { integer, oneOf, parseJsonObject } from './args.js'
import { createContext, type Context } from './context.js'
import { CliError } from './exit-codes.js'
import { jsonText, relativeTime, type Column } from './output.js'
import { pageOptions } from './limits.js'

interface CommandT {
  id: string
  deviceId: string
  name: string
  params: unknown
  status: string
  createdAt: string
  expiresAt: string
  sentAt: string | null
  completedAt: string | null
  result: unknown
  correlationId: string | null
}

const FINAL = new Set(['succeeded', 'failed', 'expired', 'cancelled'])
const STATUSES = ['queued', 'sent', 'succeeded', 'failed', 'expired', 'cancelled'] as const
/** The broker's default COMMAND_MAX_WAIT_SECONDS; each wait asks for at most this much. */
const WAIT_STEP_SECONDS = 60

const COLUMNS: Array<Column<CommandT>> = [
  { header: 'ID', value: (c) => c.id, max: 36 },
  { header: 'NAME', value: (c) => c.name, max: 24 },
  { header: 'STATUS', value: (c) => c.status },
  { header: 'CREATED', value: (c) => relativeTime(c.createdAt) },
  { header: 'COMPLETED', value: (c) => relativeTime(c.completedAt) },
  { header: 'RESULT', value: (c) => c.result === null || c.result === undefined ? '-' : jsonText(c.result), max: 50 }
]

function printCommand (ctx: Context, c: CommandT): void {
  ctx.out.record(c, [
    ['id', c.id],
    ['device', c.deviceId],
    ['name', c.name],
    ['params', c.params === null || c.params === undefined ? '-' : jsonText(c.params)],
    ['status', c.status],
    ['created', `${relativeTime(c.createdAt)} (${c.createdAt})`],
    ['sent', c.sentAt ? relativeTime(c.sentAt) : '-'],
    ['completed', c.completedAt ? relativeTime(c.completedAt) : '-'],
    ['expires', relativeTime(c.expiresAt)],
    ['result', c.result === null || c.result === undefined ? '-' : jsonText(c.result)]
  ])
}

/**
 * Waits up to `seconds` for the command to finish, in several held requests
 * if needed: the broker caps each at COMMAND_MAX_WAIT_SECONDS (60 s by
 * default) and answers 400 above its cap, so the step then halves.
 */
async function waitFor (api: ApiClient, id: string, seconds: number): Promise<CommandT> {
  const deadline = Date.now() + seconds * 1000
  let step = WAIT_STEP_SECONDS
  for (;;) {
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000))
    const wait = Math.min(left, step)
    try {
      const c = (await api.request<CommandT>('GET', `/v1/commands/${encodeURIComponent(id)}`, { query: { waitSeconds: wait }, timeoutMs: (wait + 30) * 1000 })).body
      if (FINAL.has(c.status) || Date.now() >= deadline) return c
    } catch (err) {
      // A broker with a lower COMMAND_MAX_WAIT_SECONDS refuses the step: ask for less.
      if ((err as { status?: number }).status === 400 && step > 1) { step = Math.max(1, Math.floor(step / 2)); continue }
      throw err
    }
  }
}

/** Exit 1 unless the command succeeded (after --wait), saying how it ended. */
function finish (ctx: Context, c: CommandT): void {
  printCommand(ctx, c)
  if (c.status === 'succeeded') return
  if (FINAL.has(c.status)) throw new CliError(`error: command ${c.id} ${c.status}`)
  throw new CliError(`error: command ${c.id} is still ${c.status} (the wait ran out; follow it with: fleetgate commands get ${c.id} --wait 60)`)
}

export function registerCommands (program: Command): void {
  const commands = program.command('commands')
    .description('Send commands to devices and follow them')
    .addHelpText('after', `
Examples:
  $ fleetgate commands send sensor-1 reboot --params '{"delaySeconds":5}' --wait 30
  $ fleetgate commands ls sensor-1 --status failed`)

  commands.command('send')
    .description('Send a command to a device (POST /v1/devices/{id}/commands)')
    .argument('<device>', 'device id')
    .argument('<name>', 'command name, e.g. reboot')
    .option('--params <json>', 'parameters, a JSON object (@file.json reads a file)')
    .option('--ttl <seconds>', 'expires unless answered within this (default 3600)', integer('--ttl', 1, 2_592_000))
    .option('--idempotency-key <key>', 'a retry with the same key returns the first command instead of sending another')
    .option('-w, --wait [seconds]', 'wait until the device answers (default 60 s); exit 1 unless it succeeded', integer('--wait', 1, 86_400))
    .addHelpText('after', `
Without --wait it prints the command (status queued, or sent when the device
is online) and exits 0. With --wait it prints the finished command and exits
0 if it succeeded, 1 if it failed, expired or is still pending when the wait
runs out.

Examples:
  $ fleetgate commands send sensor-1 reboot
  $ fleetgate commands send sensor-1 setLed --params '{"on":true}' --wait
  $ fleetgate commands send sensor-1 reboot --idempotency-key reboot-2026-11-29 --ttl 600`)
    .action(async (device: string, name: string, opts: { params?: string, ttl?: number, idempotencyKey?: string, wait?: number | true }, cmd: Command) => {
      const params = opts.params !== undefined ? parseJsonObject('--params', opts.params) : undefined
      const ctx = createContext(cmd)
      const headers: Record<string, string> = opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {}
      const c = (await ctx.api.request<CommandT>('POST', `/v1/devices/${encodeURIComponent(device)}/commands`, { body: { name, params, ttlSeconds: opts.ttl }, headers })).body
      if (opts.wait === undefined) { printCommand(ctx, c); return }
      if (FINAL.has(c.status)) { finish(ctx, c); return }
      if (ctx.out.format === 'table') ctx.out.note(`command ${c.id} ${c.status}; waiting for the device…`)
      finish(ctx, await waitFor(ctx.api, c.id, opts.wait === true ? 60 : opts.wait))
    })

  commands.command('get')
    .description('Show a command (GET /v1/commands/{id})')
    .argument('<id>', 'command id')
    .option('-w, --wait [seconds]', 'wait until it finishes (default 60 s); exit 1 unless it succeeded', integer('--wait', 1, 86_400))
    .addHelpText('after', '\nExamples:\n  $ fleetgate commands get 0b6c…\n  $ fleetgate commands get 0b6c… --wait 30')
    .action(async (id: string, opts: { wait?: number | true }, cmd: Command) => {
      const ctx = createContext(cmd)
      if (opts.wait === undefined) { printCommand(ctx, (await ctx.api.request<CommandT>('GET', `/v1/commands/${encodeURIComponent(id)}`)).body); return }
      finish(ctx, await waitFor(ctx.api, id, opts.wait === true ? 60 : opts.wait))
    })

  pageOptions(commands.command('ls')
    .alias('list')
    .description('A device\'s commands, oldest first')
    .argument('<device>', 'device id')
    .option('--status <status>', `only commands in this status: ${STATUSES.join(', ')}`, oneOf('--status', STATUSES)), { noun: 'commands', defaultLimit: 100, cursor: false })
    .addHelpText('after', '\nExample:\n  $ fleetgate commands ls sensor-1 --status sent')
    .action(async (device: string, opts: { status?: string, limit: number, all?: boolean }, cmd: Command) => {
      const ctx = createContext(cmd)
      const query = { status: opts.status, limit: opts.limit }
      const path = `/v1/devices/${encodeURIComponent(device)}/commands`
      if (opts.all) {
        const items: CommandT[] = []
        for await (const c of allPages<CommandT>(ctx.api, path, query)) items.push(c)
        ctx.out.list(items, COLUMNS)
      } else {
        const page = (await ctx.api.request<{ items: CommandT[], nextCursor: string | null }>('GET', path, { query })).body
        ctx.out.list(page.items, COLUMNS, page.nextCursor)
      }
    })

  commands.command('cancel')
    .description('Cancel a command that has not finished (POST /v1/commands/{id}/cancel)')
    .argument('<id>', 'command id')
    .addHelpText('after', '\nExample:\n  $ fleetgate commands cancel 0b6c…')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      printCommand(ctx, (await ctx.api.request<CommandT>('POST', `/v1/commands/${encodeURIComponent(id)}/cancel`)).body)
    })
}
