// `fleetgate rollouts …`: a config or command for every device matching a
// selector, pushed at a rate (/v1/rollouts). `watch` redraws the progress
// line on each rollout event of the stream (polling every --interval too,
// and alone on a broker without /v1/events) until the rollout completes or
// is cancelled, or Ctrl-C.
import type { Command } from 'commander'
import { allPages, type ApiClient } from './api-client.js'
import { decimal, integer, oneOf, parseJsonObject, parseSelector } from './args.js'
import { createContext, untilInterrupted, type Context } from './context.js'
import { followEvents } from './events.js'
import { CliError, UsageError } from './exit-codes.js'
import { jsonText, labelsText, relativeTime, type Column } from './output.js'
import { pageOptions } from './limits.js'

interface Counts { targeted: number, pending: number, pushed?: number, inSync?: number, delivered?: number, applied?: number, failed?: number, expired?: number }
interface Rollout {
  id: string
  kind?: 'config' | 'command'
  selector: Record<string, string> | string
  config: unknown
  command?: { name: string, params?: unknown, ttlSeconds?: number } | null
  ratePerSecond: number | null
  maxFailures?: number | null
  maxFailureRatio?: number | null
  status: string
  pauseReason?: string | null
  createdAt: string
  updatedAt: string
  counts: Counts
}

const STATUSES = ['running', 'paused', 'cancelled', 'completed'] as const
const FINAL = new Set(['cancelled', 'completed'])

const selectorText = (s: Rollout['selector']) => typeof s === 'string' ? (s || '(every device)') : (Object.keys(s).length ? labelsText(s) : '(every device)')

/** `37/100 done · 60 pending · 2 failed · 1 expired`: done is applied (config) or succeeded (command) when the broker counts them, else in sync. */
export function progressText (r: Rollout): string {
  const c = r.counts
  const done = c.applied ?? c.inSync ?? 0
  const parts = [`${done}/${c.targeted} done`]
  if (c.delivered !== undefined) parts.push(`${c.delivered} delivered`)
  else if (c.pushed !== undefined) parts.push(`${c.pushed} pushed`)
  parts.push(`${c.pending} pending`)
  if (c.failed) parts.push(`${c.failed} failed`)
  if (c.expired) parts.push(`${c.expired} expired`)
  return parts.join(' · ')
}

const statusText = (r: Rollout) => r.status + (r.status === 'paused' && r.pauseReason ? ` (${r.pauseReason})` : '')

const COLUMNS: Array<Column<Rollout>> = [
  { header: 'ID', value: (r) => r.id, max: 36 },
  { header: 'KIND', value: (r) => r.kind ?? 'config' },
  { header: 'SELECTOR', value: (r) => selectorText(r.selector), max: 30 },
  { header: 'STATUS', value: statusText, max: 40 },
  { header: 'PROGRESS', value: progressText, max: 60 },
  { header: 'CREATED', value: (r) => relativeTime(r.createdAt) }
]

function printRollout (ctx: Context, r: Rollout): void {
  const what = r.kind === 'command' && r.command ? `command ${r.command.name} ${r.command.params ? jsonText(r.command.params) : ''}`.trim() : `config ${jsonText(r.config)}`
  const limits = [r.maxFailures != null ? `${r.maxFailures} failure${r.maxFailures === 1 ? '' : 's'}` : '', r.maxFailureRatio != null ? `${r.maxFailureRatio * 100}% failed` : ''].filter(Boolean).join(', ')
  ctx.out.record(r, [
    ['id', r.id],
    ['status', statusText(r)],
    ['selector', selectorText(r.selector)],
    ['sets', what],
    ['rate', r.ratePerSecond ? `${r.ratePerSecond} devices/s` : 'as fast as possible'],
    ['pauses at', limits || '-'],
    ['progress', progressText(r)],
    ['created', `${relativeTime(r.createdAt)} (${r.createdAt})`],
    ['updated', relativeTime(r.updatedAt)]
  ])
}

const path = (id: string) => `/v1/rollouts/${encodeURIComponent(id)}`

/** Shows the rollout's progress until it completes or is cancelled (exit 1), or Ctrl-C (exit 0). */
async function watch (ctx: Context, api: ApiClient, id: string, intervalMs: number): Promise<void> {
  const stop = untilInterrupted()
  const events = new AbortController()
  const abortEvents = () => events.abort()
  stop.signal.addEventListener('abort', abortEvents, { once: true })
  let wake = () => {}
  // The stream only wakes the loop sooner; without it (an older broker, a
  // token without read on events) polling alone still shows progress.
  const stream = followEvents(api, { kinds: 'rollout' }, {
    signal: events.signal,
    onEvent: (e) => { if ((e.data as { rolloutId?: string }).rolloutId === id) wake() }
  }).catch(() => {})
  const redraw = ctx.out.format === 'table' && Boolean(process.stdout.isTTY)
  let shown = ''
  let last: Rollout | undefined
  try {
    while (!stop.signal.aborted) {
      let r: Rollout
      try {
        r = (await api.request<Rollout>('GET', path(id))).body
      } catch (err) {
        if (stop.signal.aborted) break
        throw err
      }
      last = r
      const line = `${r.id.slice(0, 8)}  ${statusText(r).padEnd(9)}  ${progressText(r)}`
      if (line !== shown) {
        shown = line
        if (redraw) process.stdout.write(`\r\x1b[K${line}`)
        else ctx.out.streamItem(r, line)
      }
      if (FINAL.has(r.status)) break
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, intervalMs)
        function done () { clearTimeout(t); stop.signal.removeEventListener('abort', done); resolve() }
        wake = done
        stop.signal.addEventListener('abort', done, { once: true })
      })
    }
  } finally {
    if (redraw && shown) process.stdout.write('\n')
    events.abort()
    await stream
    stop.signal.removeEventListener('abort', abortEvents)
    stop.dispose()
  }
  if (!stop.interrupted() && last?.status === 'cancelled') throw new CliError(`error: rollout ${id} was cancelled`)
}

export function registerRollouts (program: Command): void {
  const rollouts = program.command('rollouts')
    .description('Roll a config or command out to every device matching a selector')
    .addHelpText('after', `
Examples:
  $ fleetgate rollouts create --selector site=berlin --config '{"fw":"2.1"}' --rate 50 --max-failure-ratio 0.05 --watch
  $ fleetgate rollouts ls --status running
  $ fleetgate rollouts pause 3f2a…`)

  pageOptions(rollouts.command('ls')
    .alias('list')
    .description('List rollouts, newest first')
    .option('--status <status>', `only rollouts in this status: ${STATUSES.join(', ')}`, oneOf('--status', STATUSES)), { noun: 'rollouts', defaultLimit: 50 })
    .addHelpText('after', '\nExample:\n  $ fleetgate rollouts ls --status paused')
    .action(async (opts: { status?: string, limit: number, cursor?: string, all?: boolean }, cmd: Command) => {
      const ctx = createContext(cmd)
      const query = { status: opts.status, limit: opts.limit }
      if (opts.all) {
        const items: Rollout[] = []
        for await (const r of allPages<Rollout>(ctx.api, '/v1/rollouts', query)) items.push(r)
        ctx.out.list(items, COLUMNS)
      } else {
        const page = (await ctx.api.request<{ items: Rollout[], nextCursor: string | null }>('GET', '/v1/rollouts', { query: { ...query, cursor: opts.cursor } })).body
        ctx.out.list(page.items, COLUMNS, page.nextCursor)
      }
    })

  rollouts.command('create')
    .description('Start a rollout of a config (--config) or a command (--command)')
    .requiredOption('-l, --selector <selector>', 'target devices, e.g. site=berlin,tier=edge (\'\' : every device); fixed at creation')
    .option('--config <json>', 'the config to set, a JSON object (@file.json reads a file)')
    .option('--command <name>', 'a command to send instead of a config')
    .option('--params <json>', 'the command\'s parameters, a JSON object')
    .option('--ttl <seconds>', 'the command\'s time to live', integer('--ttl', 1, 2_592_000))
    .option('--rate <n>', 'devices per second (default: as fast as possible)', integer('--rate', 1, 1_000_000))
    .option('--max-failures <n>', 'pause by itself once this many targets failed or expired', integer('--max-failures', 0, 1_000_000_000))
    .option('--max-failure-ratio <r>', 'pause by itself once this share (0–1) of the finished targets failed', decimal('--max-failure-ratio', 0, 1))
    .option('-w, --watch', 'then follow its progress like `rollouts watch`')
    .addHelpText('after', `
Examples:
  $ fleetgate rollouts create --selector site=berlin --config '{"intervalSeconds":30}'
  $ fleetgate rollouts create --selector tier=edge --config @edge.json --rate 20 --max-failures 5 --watch
  $ fleetgate rollouts create --selector site=lab --command reboot --params '{"delaySeconds":5}'`)
    .action(async (opts: { selector: string, config?: string, command?: string, params?: string, ttl?: number, rate?: number, maxFailures?: number, maxFailureRatio?: number, watch?: boolean }, cmd: Command) => {
      const selector = parseSelector('--selector', opts.selector, true)
      if ((opts.config === undefined) === (opts.command === undefined)) throw new UsageError('--config: give either --config <json> or --command <name>')
      if (opts.command === undefined && (opts.params !== undefined || opts.ttl !== undefined)) throw new UsageError('--params: only with --command')
      const body = {
        selector,
        config: opts.config !== undefined ? parseJsonObject('--config', opts.config) : undefined,
        command: opts.command !== undefined ? { name: opts.command, params: opts.params !== undefined ? parseJsonObject('--params', opts.params) : undefined, ttlSeconds: opts.ttl } : undefined,
        ratePerSecond: opts.rate,
        maxFailures: opts.maxFailures,
        maxFailureRatio: opts.maxFailureRatio
      }
      const ctx = createContext(cmd)
      const r = (await ctx.api.request<Rollout>('POST', '/v1/rollouts', { body })).body
      printRollout(ctx, r)
      if (opts.watch) await watch(ctx, ctx.api, r.id, 1000)
    })

  rollouts.command('get')
    .description('Show a rollout with its counts by state')
    .argument('<id>', 'rollout id')
    .addHelpText('after', '\nExample:\n  $ fleetgate rollouts get 3f2a…')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      printRollout(ctx, (await ctx.api.request<Rollout>('GET', path(id))).body)
    })

  rollouts.command('watch')
    .description('Follow a rollout\'s progress until it completes or is cancelled (Ctrl-C stops watching, not the rollout)')
    .argument('<id>', 'rollout id')
    .option('--interval <ms>', 'poll at least this often', integer('--interval', 100, 60_000), 2000)
    .addHelpText('after', `
On a terminal one line is redrawn; otherwise one line (table) or one JSON
rollout (json, ndjson) is printed per change. Exits 0 when the rollout
completes, 1 when it is cancelled, 0 on Ctrl-C. A paused rollout is still
watched (it may be resumed).

Example:
  $ fleetgate rollouts watch 3f2a…`)
    .action(async (id: string, opts: { interval: number }, cmd: Command) => {
      const ctx = createContext(cmd)
      await watch(ctx, ctx.api, id, opts.interval)
    })

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    rollouts.command(action)
      .description({ pause: 'Pause a running rollout', resume: 'Resume a paused rollout', cancel: 'Cancel a rollout for good (devices already reached keep their config)' }[action])
      .argument('<id>', 'rollout id')
      .addHelpText('after', `\nExample:\n  $ fleetgate rollouts ${action} 3f2a…`)
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const ctx = createContext(cmd)
        printRollout(ctx, (await ctx.api.request<Rollout>('POST', `${path(id)}/${action}`)).body)
      })
  }
}
