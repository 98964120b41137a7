// Cluster mode (issue 6): what replicas share through Redis, using the
// engines aedes deployments use rather than a protocol of our own:
// - mqemitter-redis: message routing between replicas (aedes' own $SYS
//   traffic too, which is how a CONNECT of a client id on one replica closes
//   the same id's connection on another — the MQTT take-over);
// - aedes-persistence-redis: sessions (subscriptions, offline QoS 1/2
//   queues), retained messages and wills, so a persistent session resumes on
//   whichever replica the device reaches next;
// - two more connections for control-plane dispatch (cluster-dispatch.ts).
//
// Telemetry never touches Redis: device publishes are ingested locally and
// skip aedes routing (mqtt-broker.ts), so an unreachable Redis stops neither
// ingestion nor PUBACKs of connected devices.
//
// What a CONNECT costs in Redis (issue 15: three replicas accepted ~300-600
// CONNECTs/s together, against > 4,000/s for one process, at 9 commands per
// clean CONNECT + SUBSCRIBE, each its own write):
// - device topics stay on the replica (routedLocally below): a message on
//   devices/{id}/… is published only by the replica holding that device's
//   connection (cluster-dispatch.ts delivers where the device is) and only
//   that device may receive it (topic-acl.ts), so neither its SUBSCRIBE nor
//   its messages need Redis: no SUBSCRIBE/UNSUBSCRIBE per device filter, no
//   PUBLISH per config push or command;
// - aedes' $SYS announcements nobody in the cluster listens to
//   (new/subscribes, new/unsubscribes, disconnect/clients) stay local too,
//   and the one others need (new/clients, for the take-over) goes out in
//   batches;
// - the session store skips commands that cannot find anything: the will
//   look-up at CONNECT (aedes-persistence-redis keys it by client.brokerId,
//   which an aedes connection does not have), the queue of a session with
//   no subscription stored, retained messages under devices/ (nothing can
//   store one there);
// - what is left (one stored-session look-up per Clean Start CONNECT, the
//   announcement batches) is auto-pipelined: commands issued in the same
//   turn of the event loop go out in one write.
// Measured with `npm run bench:cluster` (and test/cluster/connect-cost.test.ts):
// 9 Redis commands per clean CONNECT + SUBSCRIBE before, 1.5-1.7 after.
import { Readable } from 'node:stream'
import { Redis, type RedisOptions } from 'ioredis'
import mqemitterRedis from 'mqemitter-redis'
import aedesPersistenceRedis from 'aedes-persistence-redis'
import type { Logger } from '../logger.js'
import { withTimeout } from '../with-timeout.js'
import { backoffDelay } from '../backoff.js'
import { DEVICES_PREFIX } from '../../devices/topics.js'

export interface ClusterBackend {
  /** For Aedes.createBroker({ mq, persistence }). */
  readonly mq: unknown
  readonly persistence: unknown
  /** Connections for cluster-dispatch.ts: commands, and a subscriber. */
  readonly pub: Redis
  readonly sub: Redis
  /** Undefined when every connection to Redis is up; otherwise why not. */
  problem (): string | undefined
  /** Closes every connection (after aedes is closed). */
  close (): Promise<void>
}

/**
 * The session store (aedes-persistence-redis) fires some commands without
 * awaiting them (wills on connect and disconnect). When their connection is
 * closed with Redis away (shutdown), ioredis rejects them and nobody
 * listens: such a rejection is expected and harmless, not a reason to stop.
 */
export function isAbandonedRedisCommand (err: unknown): boolean {
  const e = err as { name?: unknown, message?: unknown } | undefined
  return e?.name === 'MaxRetriesPerRequestError' || e?.message === 'Connection is closed.'
}

export function createClusterBackend (url: string, log: Logger): ClusterBackend {
  const common: RedisOptions = {
    // Reconnect for ever, backing off exponentially to 2 s with jitter (the
    // same helper as cluster-events.ts), so that replicas that lost Redis
    // together do not reconnect in step: Redis coming back must heal the
    // replica without a restart.
    retryStrategy: (attempt) => backoffDelay(attempt - 1, { baseMs: 100, maxMs: 2000, jitter: 'equal' }),
    // Commands issued while Redis is away wait for it instead of failing
    // after 20 reconnect attempts (ioredis' default): a failed SUBSCRIBE
    // would never be retried (the device's subscription silently lost), and
    // the session store fires commands it does not await.
    maxRetriesPerRequest: null,
    connectionName: 'fleetgate',
    lazyConnect: false
  }
  const connect = (name: string, extra: RedisOptions = {}) => {
    const conn = new Redis(url, { ...common, connectionName: `fleetgate-${name}`, ...extra })
    // Errors are reported by status and reconnects; an unhandled 'error'
    // event would crash the process.
    let lastError = ''
    conn.on('error', (err: Error) => {
      if (err.message !== lastError) log.warn({ connection: name, err: { message: err.message } }, 'redis connection error')
      lastError = err.message
    })
    conn.on('ready', () => { if (lastError) log.info({ connection: name }, 'redis connection restored'); lastError = '' })
    return conn
  }
  // Auto-pipelining: commands issued in one turn of the event loop (many
  // CONNECTs at once) share one write instead of a syscall each.
  const mqPub = connect('mq-pub', { enableAutoPipelining: true })
  const mqSub = connect('mq-sub')
  const store = connect('sessions', { enableAutoPipelining: true })
  // Dispatch fails fast while Redis is away instead of queueing requests
  // (the control plane then reports "not delivered"; the device gets its
  // config and commands from PostgreSQL when it next subscribes).
  // Nor are requests re-sent after a reconnect (that could deliver twice).
  const pub = connect('dispatch-pub', { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 })
  const sub = connect('dispatch-sub')
  // MQTT traffic lives under its own channel prefix, so that an MQTT
  // wildcard subscription (a Redis PSUBSCRIBE) never matches the dispatch
  // channels (cluster-dispatch.ts) or anything else on this Redis.
  // (The package exports it, its type definitions do not.)
  const { MQEmitterRedisPrefix } = mqemitterRedis as unknown as { MQEmitterRedisPrefix: new (prefix: string, opts: object) => object }
  const MQTT_PREFIX = 'fleetgate:mqtt:'
  const mq = routeLocally(new MQEmitterRedisPrefix(MQTT_PREFIX, { pubConn: mqPub, subConn: mqSub }) as RoutingEmitter, MQTT_PREFIX)
  // Its connection errors are re-emitted here (already logged per connection
  // above); unheard, an 'error' event would crash the process.
  ;(mq as unknown as { state: NodeJS.EventEmitter }).state.on('error', () => {})
  const persistence = skipFruitlessCommands(aedesPersistenceRedis({ conn: store }) as SessionStore)
  const all = { 'mq-pub': mqPub, 'mq-sub': mqSub, sessions: store, 'dispatch-pub': pub, 'dispatch-sub': sub }

  return {
    mq,
    persistence,
    pub,
    sub,
    problem () {
      const down = Object.entries(all).filter(([, c]) => c.status !== 'ready').map(([n]) => n)
      return down.length > 0 ? `redis unreachable (${down.join(', ')})` : undefined
    },
    async close () {
      // quit() waits for Redis; if it is gone, disconnect() ends at once.
      await Promise.all(Object.values(all).map(async (c) => {
        if (c.status === 'end') return
        if (c.status !== 'ready') { c.disconnect(); return }
        await withTimeout(c.quit().catch(() => {}), 1000)
        c.disconnect()
      }))
    }
  }
}

// ---- what stays off Redis ----

type Callback = (err?: Error | null) => void
type Listener = (packet: { topic: string }, cb: Callback) => void
/** mqemitter-redis: on/emit/removeListener go through Redis; _on/_emit/_removeListener are mqemitter's in-process ones. */
interface RoutingEmitter {
  on (topic: string, fn: Listener, done?: Callback): unknown
  emit (packet: { topic: string }, done?: Callback): unknown
  removeListener (topic: string, fn: Listener, done?: Callback): unknown
  _on (topic: string, fn: Listener, done?: Callback): unknown
  _emit (packet: { topic: string }, done?: Callback): unknown
  _removeListener (topic: string, fn: Listener, done?: Callback): unknown
}

// aedes' $SYS topics another replica listens to: heartbeats and births
// (aedes.brokers, wills of dead brokers), new clients (the take-over; sent
// in batches, see announceInBatches) and aedes-persistence's subscription
// broadcasts (the subscriptions of persistent sessions every replica must
// know to queue for them). Any other $SYS message (new/subscribes,
// new/unsubscribes, disconnect/clients) has no listener anywhere: no MQTT
// client may subscribe to $-topics (topic-acl.ts).
const CLUSTER_SYS = /^\$SYS\/(?:[^/]+\/(?:heartbeat|birth|new\/clients(?:\/batch)?)|sub\/(?:add|rm|\+))$/

/**
 * True when a topic (or filter) is routed in this process only. Device
 * topics: what a device publishes never reaches aedes' routing
 * (mqtt-broker.ts), and a message for a device (its config, its commands)
 * is published by the replica that holds its connection, for that device
 * alone (only it may subscribe under devices/{id}/, anonymous clients never
 * receive devices/ topics). A push racing with the device moving to another
 * replica is lost either way (as before, when the new replica's SUBSCRIBE
 * could lag behind): the device gets its config and commands from
 * PostgreSQL when it subscribes there.
 */
export function routedLocally (topic: string): boolean {
  if (topic.startsWith(DEVICES_PREFIX)) return true
  return topic.startsWith('$SYS/') && !CLUSTER_SYS.test(topic)
}

const NEW_CLIENT = /^\$SYS\/([^/]+)\/new\/clients$/

function routeLocally (mq: RoutingEmitter, prefix: string): RoutingEmitter {
  // mqemitter-redis' in-process methods are not its documented API: an
  // upgrade that moves one must fail at start, naming it, not route wrongly.
  for (const field of ['_on', '_emit', '_removeListener', 'on', 'emit', 'removeListener'] as const) {
    if (typeof mq[field] !== 'function') throw new Error(`mqemitter-redis: ${field}() is missing (this version's internals differ from what broker/fleet/cluster-backend.ts expects)`)
  }
  const { on, emit, removeListener } = mq
  const announce = announceInBatches(mq, prefix, (packet) => emit.call(mq, packet))
  mq.on = function (topic, fn, done) { return routedLocally(topic) ? mq._on(topic, fn, done) : on.call(mq, topic, fn, done) }
  mq.emit = function (packet, done) {
    if (routedLocally(packet.topic)) {
      // Done once handed over, as a PUBLISH to Redis was: not after every
      // write to the device's socket (a slow reader would hold a dispatch
      // answer up to the drain timeout, far beyond the dispatch timeout).
      mq._emit(packet, noop)
      if (done) setImmediate(done)
      return mq
    }
    if (announce(packet)) { done?.(); return mq }
    return emit.call(mq, packet, done)
  }
  mq.removeListener = function (topic, fn, done) { return routedLocally(topic) ? mq._removeListener(topic, fn, done) : removeListener.call(mq, topic, fn, done) }
  return mq
}

/**
 * aedes announces every accepted connection on $SYS/{broker}/new/clients,
 * for a replica holding the same client id to close it (the take-over):
 * one PUBLISH per CONNECT, heard and decoded by every replica. Those made in
 * the same turn of the event loop go out as one message,
 * $SYS/{broker}/new/clients/batch (a JSON array of client ids), which each
 * other replica hands to aedes as the announcements it expects. Returns
 * false for any other message.
 */
function announceInBatches (mq: RoutingEmitter, prefix: string, send: (packet: { topic: string, payload: Buffer }) => void): (packet: { topic: string, payload?: unknown }) => boolean {
  let pending: { broker: string, ids: string[] } | undefined
  // This replica's own batches come back from Redis too: aedes ignores its
  // own announcements, so they are not handed to it.
  let own: string | undefined
  const flush = () => {
    const batch = pending!
    pending = undefined
    send({ topic: `$SYS/${batch.broker}/new/clients/batch`, payload: Buffer.from(JSON.stringify(batch.ids)) })
  }
  // Other replicas' batches, as aedes' own listener of new/clients (on the
  // prefixed topic mqemitter-redis routes under) would have heard them.
  mq.on('$SYS/+/new/clients/batch', (packet, cb) => {
    const from = packet.topic.split('/')[1]!
    if (from === own) { cb(); return }
    let ids: unknown
    try { ids = JSON.parse(String((packet as { payload?: unknown }).payload)) } catch { ids = undefined }
    if (Array.isArray(ids)) {
      for (const id of ids) {
        if (typeof id === 'string') mq._emit({ topic: `${prefix}$SYS/${from}/new/clients`, payload: Buffer.from(id) } as { topic: string }, noop)
      }
    }
    cb()
  })
  return (packet) => {
    const m = NEW_CLIENT.exec(packet.topic)
    if (!m) return false
    if (pending === undefined) {
      own = m[1]!
      pending = { broker: own, ids: [] }
      setImmediate(flush)
    }
    pending.ids.push(String(packet.payload))
    return true
  }
}

function noop (): void {}

/** The calls of aedes-persistence-redis (its callback layer) that are skipped when they cannot find anything. */
interface SessionStore {
  delWill (client: { id: string, brokerId?: string }, cb?: unknown): Promise<unknown> | unknown
  createRetainedStreamCombi (patterns: string[]): Readable
  subscriptionsByClient (client: { id: string }): Promise<unknown[]>
  cleanSubscriptions (client: object, cb?: unknown): Promise<unknown> | unknown
  outgoingStream (client: object): Readable
}

function skipFruitlessCommands (store: SessionStore): SessionStore {
  const { delWill, createRetainedStreamCombi, cleanSubscriptions, outgoingStream } = store
  // A Clean Start CONNECT (and a session wiped) clears the stored session
  // (cleanSubscriptions) and then reads its queue (outgoingStream) only to
  // discard it. With no subscription stored, the queue is empty: it is
  // deleted with the last subscription (removeSubscriptions), and only a
  // subscription puts messages in it. So the read is skipped then.
  const nothingStored = new WeakSet<object>()
  store.cleanSubscriptions = function (client, cb) {
    if (cb !== undefined) return cleanSubscriptions.call(store, client, cb)
    nothingStored.delete(client)
    return store.subscriptionsByClient(client as { id: string }).then((subs) => {
      if (subs.length === 0) { nothingStored.add(client); return client }
      return cleanSubscriptions.call(store, client)
    })
  }
  store.outgoingStream = function (client) {
    if (nothingStored.delete(client)) return Readable.from([])
    return outgoingStream.call(store, client)
  }
  // aedes deletes the previous will at every CONNECT with delWill(client):
  // the store keys wills by client.brokerId, which an aedes connection does
  // not have, so that looks up (three commands) a key nothing ever writes.
  // Wills are removed with their broker id: at disconnect, and by the
  // sweep of dead brokers' wills.
  store.delWill = function (client, cb) {
    if (client.brokerId === undefined && cb === undefined) return Promise.resolve(null)
    return delWill.call(store, client, cb)
  }
  // No retained message exists under devices/ (mqtt-broker.ts never routes
  // what devices publish; deliveries to devices are not retained; anonymous
  // clients may not publish there): a device's SUBSCRIBE looks up nothing.
  store.createRetainedStreamCombi = function (patterns) {
    const rest = patterns.filter((p) => !p.startsWith(DEVICES_PREFIX))
    return rest.length > 0 ? createRetainedStreamCombi.call(store, rest) : Readable.from([])
  }
  return store
}
