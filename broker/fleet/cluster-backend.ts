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
import { Redis, type RedisOptions } from 'ioredis'
import mqemitterRedis from 'mqemitter-redis'
import aedesPersistenceRedis from 'aedes-persistence-redis'
import type { Logger } from '../logger.js'
import { withTimeout } from '../with-timeout.js'

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
    // Reconnect for ever, backing off to 2 s: Redis coming back must heal
    // the replica without a restart.
    retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
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
  const mqPub = connect('mq-pub')
  const mqSub = connect('mq-sub')
  const store = connect('sessions')
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
  const mq = new MQEmitterRedisPrefix('fleetgate:mqtt:', { pubConn: mqPub, subConn: mqSub })
  // Its connection errors are re-emitted here (already logged per connection
  // above); unheard, an 'error' event would crash the process.
  ;(mq as unknown as { state: NodeJS.EventEmitter }).state.on('error', () => {})
  const persistence = aedesPersistenceRedis({ conn: store })
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
