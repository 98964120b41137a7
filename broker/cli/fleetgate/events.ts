// `fleetgate events`: the live event stream (GET /v1/events, Server-Sent
// Events), and followEvents(), which `telemetry tail` and `rollouts watch`
// use too. A dropped connection is reopened with Last-Event-ID, so the kinds
// the broker stores (config, command, rollout, device, dead_letter) resume
// without a gap; telemetry and presence are live only. Ctrl-C closes the
// stream and exits 0.
import type { Command } from 'commander'
import type { ApiClient, Query } from './api-client.js'
import { ApiFailure, NetworkError } from './api-client.js'
import { parseList, parseSelector } from './args.js'
import { createContext, untilInterrupted } from './context.js'
import { CliError, UsageError } from './exit-codes.js'
import { isoSeconds, truncate } from './output.js'
import { readSse } from './sse-reader.js'
import { createBackoff } from '../../backoff.js'

export const EVENT_KINDS = ['telemetry', 'presence', 'config', 'command', 'dead_letter', 'rollout', 'device'] as const

export interface FleetEvent { id?: string | number, kind: string, type: string, at: string, deviceId?: string, data: Record<string, unknown> }

export interface FollowOptions {
  signal: AbortSignal
  lastEventId?: string
  /** Called once the stream is open (again). */
  onOpen? (): void
  onEvent (event: FleetEvent): void | Promise<void>
  /** The broker dropped events for this slow consumer. */
  onDropped? (count: number): void
  onReconnect? (reason: string, delayMs: number): void
}

const sleep = async (ms: number, signal: AbortSignal) => await new Promise<void>((resolve) => {
  const t = setTimeout(done, ms)
  function done () { clearTimeout(t); signal.removeEventListener('abort', done); resolve() }
  signal.addEventListener('abort', done, { once: true })
})

/**
 * Reads the event stream until `signal` aborts. Refusals (4xx: bad filter,
 * auth, 404 on a broker without the stream) end it with their error; a lost
 * connection or a 5xx/429 is retried with backoff (1 s doubling to 15 s,
 * equal jitter: many consoles that lost one broker do not come back together).
 */
export async function followEvents (api: ApiClient, query: Query, opts: FollowOptions): Promise<void> {
  let lastEventId = opts.lastEventId
  const backoff = createBackoff({ baseMs: 1000, maxMs: 15_000, jitter: 'equal' })
  while (!opts.signal.aborted) {
    let reason = 'the broker closed the stream'
    try {
      const res = await api.openStream('/v1/events', query, { signal: opts.signal, lastEventId })
      backoff.reset()
      opts.onOpen?.()
      for await (const e of readSse(res.body!)) {
        if (e.id !== undefined) lastEventId = e.id
        if (e.event === 'dropped') {
          opts.onDropped?.(Number((JSON.parse(e.data) as { count?: number }).count ?? 0))
          continue
        }
        let event: FleetEvent
        try { event = JSON.parse(e.data) as FleetEvent } catch { continue }
        await opts.onEvent(event)
      }
    } catch (err) {
      if (opts.signal.aborted) return
      // Retried: the broker unreachable, 5xx or 429 (too many streams), and
      // a connection lost while reading (undici: TypeError "terminated").
      // Anything else the CLI says about the request is final.
      if (err instanceof ApiFailure && err.status < 500 && err.status !== 429) throw err
      if (err instanceof CliError && !(err instanceof ApiFailure) && !(err instanceof NetworkError)) throw err
      reason = err instanceof CliError ? err.message : `error: the stream broke (${err instanceof Error ? err.message : String(err)})`
    }
    if (opts.signal.aborted) return
    const delay = backoff.next()!
    opts.onReconnect?.(reason, delay)
    await sleep(delay, opts.signal)
  }
}

/** One line of an event for people: `12:00:01Z  telemetry/stored  sensor-1  {"temp":21.5}`. */
export function eventLine (e: FleetEvent): string {
  const data = e.kind === 'telemetry' ? (e.data as { reading?: unknown }).reading : e.data
  return `${isoSeconds(e.at)}  ${`${e.kind}/${e.type}`.padEnd(22)}  ${(e.deviceId ?? '-').padEnd(16)}  ${truncate(JSON.stringify(data ?? {}), 120)}`
}

/** Runs a stream command until Ctrl-C: prints each event, notes reconnects and drops on stderr. */
export async function streamToOutput (cmd: Command, query: Query, options: { lastEventId?: string, banner: string, filter?: (e: FleetEvent) => boolean, line?: (e: FleetEvent) => string }): Promise<void> {
  const ctx = createContext(cmd)
  const stop = untilInterrupted()
  try {
    await followEvents(ctx.api, query, {
      signal: stop.signal,
      lastEventId: options.lastEventId,
      onOpen: () => { if (ctx.interactive) ctx.out.note(`${options.banner} (Ctrl-C to stop)`) },
      onEvent: (e) => { if (!options.filter || options.filter(e)) ctx.out.streamItem(e, (options.line ?? eventLine)(e)) },
      onDropped: (n) => ctx.out.note(`warning: the broker dropped ${n} events (this terminal did not keep up)`),
      onReconnect: (reason, ms) => ctx.out.note(`${reason}; reconnecting in ${(ms / 1000).toFixed(1)} s…`)
    })
  } finally {
    stop.dispose()
  }
}

export function registerEvents (program: Command): void {
  program.command('events')
    .description('Follow the fleet\'s live events (GET /v1/events) until Ctrl-C')
    .option('--kinds <list>', `event kinds, comma-separated: ${EVENT_KINDS.join(', ')} (default: all)`)
    .option('-d, --device <ids>', 'only these devices (comma-separated, up to 100)')
    .option('-l, --selector <selector>', 'only devices matching this label selector, e.g. site=berlin,tier=edge')
    .option('--last-event-id <id>', 'resume after this event id (stored kinds only: config, command, rollout, device, dead_letter)')
    .addHelpText('after', `
Each event is one line (table) or one JSON object per line (json, ndjson):
  {"id":"42","kind":"config","type":"desired","at":"…","deviceId":"sensor-1","data":{"version":3,"source":"api"}}
A lost connection is reopened with the last event id, so stored kinds resume
without a gap; telemetry and presence are live only. Ctrl-C exits 0.

Examples:
  $ fleetgate events
  $ fleetgate events --kinds presence,config --selector site=berlin
  $ fleetgate events --kinds command -o ndjson | jq .data`)
    .action(async (opts: { kinds?: string, device?: string, selector?: string, lastEventId?: string }, cmd: Command) => {
      const kinds = opts.kinds !== undefined ? parseList('--kinds', opts.kinds) : undefined
      for (const k of kinds ?? []) {
        if (!(EVENT_KINDS as readonly string[]).includes(k)) throw new UsageError(`--kinds: expected some of ${EVENT_KINDS.join(', ')}, got '${k}'`)
      }
      const devices = opts.device !== undefined ? parseList('--device', opts.device) : undefined
      if (devices && devices.length > 100) throw new UsageError(`--device: at most 100 devices, got ${devices.length}`)
      if (opts.lastEventId !== undefined && !/^\d+$/.test(opts.lastEventId)) throw new UsageError(`--last-event-id: expected an event id (a number), got '${opts.lastEventId}'`)
      await streamToOutput(cmd, {
        kinds: kinds?.join(','),
        deviceIds: devices?.join(','),
        selector: opts.selector !== undefined ? parseSelector('--selector', opts.selector) : undefined
      }, { banner: 'following events', lastEventId: opts.lastEventId })
    })
}
