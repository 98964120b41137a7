// GET /v1/events: the fleet's events as Server-Sent Events (issue 13).
//
// - Filters: kinds, deviceIds (≤ 100), selector (labels). A selector is
//   resolved to the set of matching device ids when the stream opens
//   (one indexed query, labels @> selector), refreshed every
//   SELECTOR_REFRESH_MS and at once for a device whose `device` event
//   passes (created, updated: its labels may have changed). Chosen over a
//   per-event label look-up (an LRU of id → labels loaded in batches):
//   filtering stays synchronous, so events keep their order and the hot path
//   does no I/O; the cost is one id per matching device per stream
//   (~60 bytes), and a device relabeled by a change that emits no event is
//   seen within SELECTOR_REFRESH_MS. The replay filters by selector in SQL.
// - Resume (Last-Event-ID header, or ?lastEventId= for EventSource's first
//   connect): the stored kinds (fleet-events.ts STORED_KINDS) are replayed
//   from fleet_events (id > N, same filters), then the stream goes live
//   with neither gap nor duplicate: it subscribes first and holds live
//   events, replays page by page, then sends the held events the replay did
//   not already send. Live-only kinds (telemetry, presence) do not resume.
//   The limit: ids are taken from a sequence at INSERT, so two concurrent
//   transactions can commit out of id order (id 11 visible before id 10).
//   A stream sends both as they commit; a client that disconnects in the
//   milliseconds between the two commits and resumes from 11 does not get
//   10 from the replay. Live events with an id at or below the resume point
//   that commit after the reconnect are still sent (they are late commits),
//   so the gap is only for a commit that lands while the client is away;
//   a client that must see every change re-reads the resource (or resumes
//   from an older id and drops ids it has). Documented in the README.
// - Bounded: devices/event-stream.ts (buffer, `dropped`, heartbeat).
//   Streams per token and in total are limited: 429 too_many_streams.
// - Shutdown: the broker's HTTP close ends every stream first (preClose),
//   so fastify's close never waits on an open stream.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type pg from 'pg'
import { ApiError } from '../api-error.js'
import { parseLabelSelector } from '../label-selector.js'
import type { OperatorAuth } from '../operator-auth.js'
import { errors } from '../schemas.js'
import { EVENT_KINDS, STORED_KINDS, isEventKind, type EventHub, type EventKind, type FleetEvent } from '../fleet-events.js'
import { accepts, createEventStream, frameOf, type EventFilter, type EventStream } from '../event-stream.js'

const SSE_EXAMPLE = ': connected\n\nevent: presence\ndata: {"kind":"presence","type":"connected","at":"2026-11-29T12:00:00.000Z","deviceId":"sensor-1","data":{}}\n\n' +
  'id: 1042\nevent: config\ndata: {"id":"1042","kind":"config","type":"desired","at":"2026-11-29T12:00:01.000Z","deviceId":"sensor-1","data":{"version":3,"source":"api"}}\n\n' +
  'event: dropped\ndata: {"count":17}\n\n: ping\n\n'
const MAX_DEVICE_IDS = 100
const SELECTOR_REFRESH_MS = 30_000
const REPLAY_PAGE = 500
/** Ids the replay sent, kept to skip them among the held live events (bounded). */
const REPLAYED_MAX = 100_000

export interface EventStreamLimits {
  bufferEvents: number
  maxPerToken: number
  maxTotal: number
  heartbeatMs: number
}

export interface EventRoutesOptions {
  auth: OperatorAuth
  pool: pg.Pool
  events: EventHub
  limits: EventStreamLimits
  onStreams? (delta: number): void
  onSent? (events: number): void
  onDropped? (events: number): void
}

const EventsQuery = Type.Object({
  kinds: Type.Optional(Type.String({ description: `comma-separated: ${EVENT_KINDS.join(', ')} (default: all)`, examples: ['telemetry,presence'] })),
  deviceIds: Type.Optional(Type.String({ description: `comma-separated device ids (at most ${MAX_DEVICE_IDS})`, examples: ['sensor-1,sensor-2'] })),
  selector: Type.Optional(Type.String({ maxLength: 4096, description: 'label selector: key=value,… (all must match)', examples: ['site=berlin,tier=edge'] })),
  lastEventId: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$', description: 'resume after this event id (as the Last-Event-ID header)' }))
}, { additionalProperties: false })

function parseKinds (text: string | undefined): Set<EventKind> {
  if (text === undefined || text.trim() === '') return new Set(EVENT_KINDS)
  const kinds = new Set<EventKind>()
  for (const part of text.split(',')) {
    const k = part.trim()
    if (!isEventKind(k)) throw new ApiError(400, 'invalid_request', `unknown event kind ${JSON.stringify(k)}; kinds are ${EVENT_KINDS.join(', ')}`)
    kinds.add(k)
  }
  return kinds
}

interface Group {
  ready: Promise<unknown>
  /** Requests waiting for `ready` before they join. */
  pending: number
  /** A waiting request joins (pending - 1). */
  join (s: EventStream): void
  /** A waiting request gives up (pending - 1). */
  release (): void
  leave (s: EventStream): void
}

/** The filter of a group: streams with equal filters share one. */
function groupKey (kinds: ReadonlySet<EventKind>, deviceIds: ReadonlySet<string> | undefined, labels: Record<string, string> | undefined): string {
  const sortedLabels = labels ? Object.keys(labels).sort().map((k) => [k, labels[k]]) : null
  return JSON.stringify([[...kinds].sort(), deviceIds ? [...deviceIds].sort() : null, sortedLabels])
}

/** Streams are given events already filtered. */
const ALL: EventFilter = { kinds: new Set(EVENT_KINDS) }

interface EventRow { id: string, at: Date, kind: EventKind, type: string, device_id: string | null, data: Record<string, unknown> }

const REPLAY = {
  name: 'fleetgate_events_replay',
  text: `SELECT id::text AS id, at, kind, type, device_id, data FROM fleet_events
          WHERE id > $1::bigint AND kind = ANY($2::text[])
            AND ($3::text[] IS NULL OR device_id = ANY($3::text[]))
            AND ($4::jsonb IS NULL OR device_id IN (SELECT id FROM devices WHERE labels @> $4::jsonb))
          ORDER BY fleet_events.id LIMIT $5`
}

/** The devices a label selector matches, kept current (see the header). */
function selectorMembership (pool: pg.Pool, labels: Record<string, string>) {
  const json = JSON.stringify(labels)
  let ids = new Set<string>()
  const refresh = async () => {
    const { rows } = await pool.query<{ id: string }>('SELECT id FROM devices WHERE labels @> $1::jsonb', [json])
    ids = new Set(rows.map((r) => r.id))
  }
  const timer = setInterval(() => { refresh().catch(() => {}) }, SELECTOR_REFRESH_MS)
  timer.unref()
  return {
    refresh,
    has: (id: string) => ids.has(id),
    async check (id: string) {
      const { rows } = await pool.query<{ m: boolean }>('SELECT labels @> $2::jsonb AS m FROM devices WHERE id = $1', [id, json])
      if (rows[0]?.m === true) ids.add(id)
      else ids.delete(id)
    },
    close () { clearInterval(timer) }
  }
}

export const eventRoutes: FastifyPluginAsyncTypebox<EventRoutesOptions> = async (app, opts) => {
  const { auth, pool, events, limits } = opts
  const open = new Set<EventStream>()
  const perToken = new Map<string, number>()

  // fastify's close waits for open connections: end the streams first.
  app.addHook('preClose', async () => { for (const s of [...open]) s.end() })

  /**
   * A hub subscription with its filter (and a selector's membership),
   * handing each accepted event to `deliver`; resolves with the unsubscribe.
   */
  async function filtered (kinds: ReadonlySet<EventKind>, deviceIds: ReadonlySet<string> | undefined, labels: Record<string, string> | undefined, deliver: (e: FleetEvent) => void): Promise<() => void> {
    const membership = labels ? selectorMembership(pool, labels) : undefined
    try {
      await membership?.refresh()
    } catch (err) {
      membership?.close()
      throw err
    }
    const filter: EventFilter = { kinds, deviceIds, matches: membership?.has }
    // A selector's membership follows device events (also when the stream
    // did not ask for the `device` kind).
    const listenKinds = membership ? new Set<EventKind>([...kinds, 'device']) : kinds
    const unsubscribe = events.subscribe((e) => {
      if (membership && e.kind === 'device' && e.deviceId !== undefined) {
        membership.check(e.deviceId).then(() => { if (accepts(filter, e)) deliver(e) }, () => {})
        return
      }
      if (accepts(filter, e)) deliver(e)
    }, listenKinds)
    return () => { unsubscribe(); membership?.close() }
  }

  // Streams with the same filter share one subscription: each event is
  // filtered, framed and encoded once per turn of the event loop for all of
  // them (one Buffer written to every socket), so ten consoles watching the
  // whole fleet cost little more than one (issue 13: ≤ 5% of the stored rate).
  const groups = new Map<string, Group>()
  function createGroup (key: string, kinds: ReadonlySet<EventKind>, deviceIds: ReadonlySet<string> | undefined, labels: Record<string, string> | undefined): Group {
    const members = new Set<EventStream>()
    let frames: string[] = []
    let scheduled = false
    const flush = () => {
      scheduled = false
      const n = frames.length
      if (n === 0) return
      const chunk = Buffer.from(n === 1 ? frames[0]! : frames.join(''))
      frames = []
      for (const m of members) m.offerChunk(chunk, n)
    }
    const ready = filtered(kinds, deviceIds, labels, (e) => {
      frames.push(frameOf(e))
      if (!scheduled) { scheduled = true; setImmediate(flush) }
    })
    const close = () => {
      if (groups.get(key) === group) groups.delete(key)
      ready.then((unsubscribe) => unsubscribe(), () => {})
    }
    const closeIfUnused = () => { if (members.size === 0 && group.pending === 0) close() }
    const group: Group = {
      ready,
      pending: 0,
      join (s) { members.add(s); group.pending-- },
      release () { group.pending--; closeIfUnused() },
      leave (s) { members.delete(s); closeIfUnused() }
    }
    groups.set(key, group)
    return group
  }

  app.get('/events', {
    preHandler: auth.require('read'),
    schema: {
      operationId: 'streamEvents',
      tags: ['events'],
      summary: 'The fleet\'s events as Server-Sent Events',
      description: 'text/event-stream. Frames: `id:` (stored kinds only: config, command, rollout, device, dead_letter), `event: <kind>`, `data: <event JSON>`; `: ping` comments every EVENTS_HEARTBEAT_MS; `event: dropped` with `{"count": n}` when the client fell behind. Resume with the Last-Event-ID header or `lastEventId` (stored kinds only; telemetry and presence are live only).',
      querystring: EventsQuery,
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$' })) }),
      response: {
        200: { description: 'the event stream', content: { 'text/event-stream': { schema: Type.String(), example: SSE_EXAMPLE } } },
        ...errors(400)
      }
    }
  }, async (req, reply) => {
    const q = req.query
    const kinds = parseKinds(q.kinds)
    let deviceIds: Set<string> | undefined
    if (q.deviceIds !== undefined) {
      deviceIds = new Set(q.deviceIds.split(',').map((s) => s.trim()).filter((s) => s !== ''))
      if (deviceIds.size > MAX_DEVICE_IDS) throw new ApiError(400, 'invalid_request', `deviceIds names ${deviceIds.size} devices; at most ${MAX_DEVICE_IDS}`)
    }
    const labels = q.selector !== undefined && q.selector.trim() !== '' ? parseLabelSelector(q.selector) : undefined
    const lastEventId = (req.headers['last-event-id'] as string | undefined) ?? q.lastEventId

    const token = req.operator?.tokenId ?? 'anonymous'
    const mine = perToken.get(token) ?? 0
    if (open.size >= limits.maxTotal) throw new ApiError(429, 'too_many_streams', `this server has ${open.size} event streams open, its limit (EVENTS_MAX_STREAMS); retry later`, { 'retry-after': '5' })
    if (mine >= limits.maxPerToken) throw new ApiError(429, 'too_many_streams', `this token has ${mine} event streams open, its limit (EVENTS_MAX_STREAMS_PER_TOKEN); close one first`, { 'retry-after': '5' })

    const resume = lastEventId !== undefined && [...kinds].some((k) => STORED_KINDS.has(k))
    // Streams without a resume share their filter's subscription (group);
    // a resuming stream has its own (its replay joins it to the live events).
    // Either is set up before the response starts, so a failing selector
    // query is still a problem+json answer.
    const key = groupKey(kinds, deviceIds, labels)
    let deliver: ((e: FleetEvent) => void) | undefined
    let unsubscribe: (() => void) | undefined
    let group: Group | undefined
    if (resume) unsubscribe = await filtered(kinds, deviceIds, labels, (e) => deliver?.(e))
    else {
      group = groups.get(key) ?? createGroup(key, kinds, deviceIds, labels)
      // Held by this request until it joins (an empty group closes); a
      // failed subscription (the selector query) is not kept for the next one.
      group.pending++
      try { await group.ready } catch (err) { group.release(); throw err }
    }

    // From here the response is written by hand (an open-ended stream).
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx (and ingress-nginx) would otherwise buffer the stream.
      'x-accel-buffering': 'no',
      'x-request-id': req.id
    })
    res.write(': connected\n\n')
    const stream: EventStream = createEventStream({ res, filter: ALL, bufferEvents: limits.bufferEvents, heartbeatMs: limits.heartbeatMs, onSent: opts.onSent, onDropped: opts.onDropped })
    open.add(stream)
    perToken.set(token, mine + 1)
    opts.onStreams?.(1)
    if (group) group.join(stream)
    else {
      stream.hold()
      deliver = stream.offer
    }
    stream.onClose(() => {
      if (group) group.leave(stream)
      else unsubscribe?.()
      open.delete(stream)
      const n = (perToken.get(token) ?? 1) - 1
      if (n > 0) perToken.set(token, n)
      else perToken.delete(token)
      opts.onStreams?.(-1)
    })
    req.log.info({ kinds: [...kinds], devices: deviceIds?.size, selector: q.selector, lastEventId, operator: req.operator?.tokenId }, 'event stream opened')
    if (!resume) return

    // Replay, paced by the client's socket (never more than a page queued).
    const replayed = new Set<string>()
    const storedKinds = [...kinds].filter((k) => STORED_KINDS.has(k))
    const page = Math.max(1, Math.min(REPLAY_PAGE, Math.floor(limits.bufferEvents / 2)))
    let after = lastEventId
    try {
      for (;;) {
        if (stream.closed) return
        // Stored events that did not fit among the held ones are left to
        // the replay: it goes on until a page comes back short with none
        // of them passed over while it ran.
        const passedOver = stream.passedOver
        const { rows } = await pool.query<EventRow>({ ...REPLAY, values: [after, storedKinds, deviceIds ? [...deviceIds] : null, labels ? JSON.stringify(labels) : null, page] })
        for (const r of rows) {
          const e: FleetEvent = { id: r.id, kind: r.kind, type: r.type, at: r.at.toISOString(), ...(r.device_id !== null ? { deviceId: r.device_id } : {}), data: r.data }
          stream.send(e)
          replayed.add(r.id)
          if (replayed.size > REPLAYED_MAX) replayed.delete(replayed.values().next().value!)
        }
        if (rows.length < page && stream.passedOver === passedOver) break
        if (rows.length > 0) after = rows.at(-1)!.id
        await stream.writable()
      }
    } catch (err) {
      req.log.warn({ err: { message: (err as Error).message } }, 'event stream replay failed; closing the stream')
      stream.end()
      return
    }
    stream.release((e) => e.id !== undefined && replayed.has(e.id))
  })
}
