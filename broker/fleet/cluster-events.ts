// The fleet's events across replicas (issue 13, cluster mode): every
// replica's events reach every event stream, whichever replica serves it.
//
// Transport: Redis pub/sub, one channel per kind (fleetgate:events:<kind>).
// Measured on this machine (2 cores, shared with other work: the machine
// figures include that noise), `node --import tsx
// simulator/bench-event-transport.ts 5`, one publishing and one listening
// connection in one process, ~230-byte events, 64 messages in flight:
//
//   transport  events/message  events/s   CPU s per million events
//                                          this process   whole machine
//   redis             1          68,465        8.9            28.5
//   redis            35         909,705        0.5             2.2
//   postgres          1           4,033       64.4           494.9
//   postgres         35          70,041        2.7            28.5
//
// Redis pub/sub carries 13–17× the events of LISTEN/NOTIFY for the same
// batching at a tenth (or less) of the machine's CPU per event.
// LISTEN/NOTIFY was the other candidate. Besides the figures, it takes a
// cluster-wide lock on PostgreSQL's notification queue at every COMMIT
// that notifies, i.e. it would serialise the ingest writers' commits, and
// a payload is limited to 8000 bytes (a telemetry batch is up to
// INGEST_BATCH_ROWS readings). Redis is already there in cluster mode (and
// only there), so the event bus adds no dependency and no load on the
// database that stores telemetry.
//
// Cost when nobody watches: a replica SUBSCRIBEs to a kind's channel only
// while one of its own streams wants that kind, and learns what the others
// want from PUBSUB NUMSUB on the channels (asked every POLL_MS, and at once
// when a replica announces a change on fleetgate:events:wants). Redis drops
// the subscriptions of a replica that dies with its connection, so nothing
// expires by hand. So `wants('telemetry')` is false on every replica when no
// stream anywhere wants telemetry, and the producers build no telemetry
// event at all. A stream opened on another replica sees telemetry from
// this one once the announcement arrives (milliseconds; POLL_MS if it is lost).
//
// Messages: the publishing replica's id, then one event JSON per line (an
// event's JSON has no line break, fleet-events.ts eventJson). What is
// published in one turn of the event loop goes out as one message per kind:
// a committed telemetry batch is one message, not one per reading. Events
// are delivered locally at once and never come back from Redis (a replica
// skips its own messages). While Redis is unreachable, other replicas'
// events do not arrive (live kinds are lost; stored kinds are in
// fleet_events and a stream that reconnects resumes them).
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from '../logger.js'
import { withTimeout } from '../with-timeout.js'
import { every, type Periodic } from '../periodic.js'
import { EVENT_JSON, EVENT_KINDS, eventJson, isEventKind, type EventHub, type EventKind, type FleetEvent, type LocalEventHub } from '../../devices/fleet-events.js'
import { backoffDelay } from '../backoff.js'

const PREFIX = 'fleetgate:events:'
const WANTS = 'fleetgate:events:wants'
const channelOf = (kind: EventKind) => PREFIX + kind
const POLL_MS = 1000

export interface ClusterEventHub extends EventHub {
  /** Remote replicas subscribed to this kind (as last asked). */
  remoteWants (kind: EventKind): number
  /** Asks Redis again what other replicas want. */
  refresh (): Promise<void>
  close (): Promise<void>
}

export interface ClusterEventsOptions {
  url: string
  brokerId: string
  local: LocalEventHub
  log: Logger
  pollMs?: number
  /** Messages sent to / received from the bus. */
  onBus? (direction: 'out' | 'in', events: number): void
}

export function createClusterEventHub (opts: ClusterEventsOptions): ClusterEventHub {
  const { local, brokerId, log } = opts
  // Reconnect for ever with the project's one backoff (ioredis counts attempts from 1).
  const common: RedisOptions = { retryStrategy: (attempt) => backoffDelay(attempt - 1, { baseMs: 100, maxMs: 2000, jitter: 'equal' }), lazyConnect: false }
  // Publishing fails fast while Redis is away (live events are not queued for later).
  const pub = new Redis(opts.url, { ...common, connectionName: 'fleetgate-events-pub', enableOfflineQueue: false, maxRetriesPerRequest: 1, autoResendUnfulfilledCommands: false })
  const sub = new Redis(opts.url, { ...common, connectionName: 'fleetgate-events-sub', maxRetriesPerRequest: null })
  let lastError = ''
  for (const [name, c] of [['events-pub', pub], ['events-sub', sub]] as const) {
    c.on('error', (err: Error) => {
      if (err.message !== lastError) log.warn({ connection: name, err: { message: err.message } }, 'redis connection error (event bus)')
      lastError = err.message
    })
  }

  const remote = new Map<EventKind, number>(EVENT_KINDS.map((k) => [k, 0]))
  // Kinds this replica is subscribed to (confirmed by Redis): its own
  // subscription is in NUMSUB's count.
  const subscribed = new Set<EventKind>()
  let closed = false

  async function refresh (): Promise<void> {
    if (pub.status !== 'ready') return
    const reply = await pub.call('PUBSUB', 'NUMSUB', ...EVENT_KINDS.map(channelOf)) as Array<string | number>
    for (let i = 0; i < reply.length; i += 2) {
      const kind = String(reply[i]).slice(PREFIX.length)
      if (!isEventKind(kind)) continue
      remote.set(kind, Math.max(0, Number(reply[i + 1]) - (subscribed.has(kind) ? 1 : 0)))
    }
  }

  // One subscription change at a time, in order.
  let syncing = Promise.resolve()
  function sync () {
    syncing = syncing.then(async () => {
      if (closed) return
      let changed = false
      for (const k of EVENT_KINDS) {
        const want = local.wantsLocally(k)
        if (want && !subscribed.has(k)) {
          await sub.subscribe(channelOf(k))
          subscribed.add(k)
          changed = true
        } else if (!want && subscribed.has(k)) {
          subscribed.delete(k)
          await sub.unsubscribe(channelOf(k))
          changed = true
        }
      }
      if (changed && pub.status === 'ready') await pub.publish(WANTS, brokerId)
    }).catch((err: Error) => log.warn({ err: { message: err.message } }, 'event bus subscription change failed; retried on the next change or poll'))
  }
  local.onWantsChanged(sync)

  sub.on('message', (channel: string, message: string) => {
    if (channel === WANTS) {
      if (message !== brokerId) refresh().catch(() => {})
      return
    }
    const nl = message.indexOf('\n')
    if (nl < 0 || message.slice(0, nl) === brokerId) return
    const events: FleetEvent[] = []
    for (const line of message.slice(nl + 1).split('\n')) {
      try {
        const e = JSON.parse(line) as FleetEvent
        e[EVENT_JSON] = line
        events.push(e)
      } catch {
        log.warn({ channel }, 'unreadable event on the event bus; skipped')
      }
    }
    opts.onBus?.('in', events.length)
    local.publish(events)
  })
  sub.subscribe(WANTS).catch((err: Error) => log.warn({ err: { message: err.message } }, 'could not subscribe to the event bus'))
  const poll: Periodic<void> = every(() => { sync(); return refresh() }, { intervalMs: opts.pollMs ?? POLL_MS, onError: () => {} })
  void refresh().catch(() => {})

  // Outbound events of this turn, by kind (one message per kind per turn).
  let outbound = new Map<EventKind, string[]>()
  let scheduled = false
  function flush () {
    scheduled = false
    const batch = outbound
    outbound = new Map()
    if (pub.status !== 'ready') return
    for (const [kind, lines] of batch) {
      opts.onBus?.('out', lines.length)
      pub.publish(channelOf(kind), brokerId + '\n' + lines.join('\n')).catch(() => {})
    }
  }

  return {
    publish (events) {
      local.publish(events)
      for (const e of events) {
        if ((remote.get(e.kind) ?? 0) === 0) continue
        let lines = outbound.get(e.kind)
        if (!lines) { lines = []; outbound.set(e.kind, lines) }
        lines.push(eventJson(e))
      }
      if (outbound.size > 0 && !scheduled) { scheduled = true; setImmediate(flush) }
    },
    subscribe: (listener, kinds) => local.subscribe(listener, kinds),
    wants: (kind) => local.wantsLocally(kind) || (remote.get(kind) ?? 0) > 0,
    remoteWants: (kind) => remote.get(kind) ?? 0,
    refresh,
    async close () {
      closed = true
      await poll.close()
      await syncing
      await Promise.all([pub, sub].map(async (c) => {
        if (c.status === 'end') return
        if (c.status !== 'ready') { c.disconnect(); return }
        await withTimeout(c.quit().catch(() => {}), 1000)
        c.disconnect()
      }))
    }
  }
}
