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
import type { Logger } from './logger.js'

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

export function createClusterBackend (url: string, log: Logger): ClusterBackend {
  const common: RedisOptions = {
    // Reconnect for ever, backing off to 2 s: Redis coming back must heal
    // the replica without a restart.
    retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
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
  const pub = connect('dispatch-pub', { enableOfflineQueue: false })
  const sub = connect('dispatch-sub')
  const mq = mqemitterRedis({ pubConn: mqPub, subConn: mqSub })
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
        await Promise.race([c.quit().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000).unref())])
        c.disconnect()
      }))
    }
  }
}
