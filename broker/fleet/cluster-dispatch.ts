// DeviceDispatch across replicas (issue 6). A config push, rollout step or
// command may be issued on any replica while the device is connected to
// another. A device connected here is served locally; otherwise the request
// is broadcast over Redis pub/sub and the replica that holds the device's
// connection delivers it (MQTT take-over guarantees one connection per
// client id in the cluster, so exactly one replica can). Every replica
// answers, and PUBLISH returns how many subscribers got the request, so the
// caller knows how many answers to wait for: no membership list is needed,
// and an offline device costs one round trip, not a timeout.
//
// Requests made in the same turn of the event loop travel together (a
// rollout step to thousands of devices is a few messages, not thousands).
// A replica that does not answer in time (it died meanwhile) counts as
// "not delivered"; so does Redis being unreachable. "Not delivered" is safe:
// the device gets its config and pending commands from PostgreSQL when it
// next subscribes or resumes its session.
import type { Redis } from 'ioredis'
import type { DeviceDispatch } from '../../devices/dispatch.js'
import type { Logger } from '../logger.js'
import { withTimeout } from '../with-timeout.js'

/** The dispatch of this process's own aedes, which knows its connected devices. */
export interface LocalDispatch extends DeviceDispatch {
  has (deviceId: string): boolean
}

export interface ClusterDispatch extends DeviceDispatch {
  close (): Promise<void>
}

export interface ClusterDispatchOptions {
  local: LocalDispatch
  pub: Redis
  sub: Redis
  brokerId: string
  timeoutMs: number
  /** False while Redis is unreachable: then nothing is sent (a local delivery would also wait for Redis, as aedes routes through it). */
  healthy (): boolean
  log: Logger
  /** Remote requests by outcome: delivered, not_delivered, timeout, error. */
  onRemote? (outcome: 'delivered' | 'not_delivered' | 'timeout' | 'error', n: number): void
}

const REQUESTS = 'fleetgate:dispatch'
const repliesTo = (brokerId: string) => `fleetgate:dispatch:${brokerId}`
const MAX_OPS = 500

/** t: topic (deliver) — absent for disconnect; p: payload. */
interface Op { d: string, t?: string, p?: unknown }
interface Request { from: string, id: number, ops: Op[] }
interface Reply { id: number, by: string, hits: number[] }

interface Waiter {
  ops: Array<{ op: Op, resolve (delivered: boolean): void }>
  hits: Set<number>
  /** Replicas that answered (a reply counted twice would settle too early). */
  repliers: Set<string>
  expected: number | undefined
  timer: NodeJS.Timeout
}

export function startClusterDispatch (opts: ClusterDispatchOptions): ClusterDispatch {
  const { local, pub, sub, brokerId, log } = opts
  let nextId = 1
  const waiting = new Map<number, Waiter>()
  let batch: Waiter['ops'] = []
  let scheduled = false
  let closed = false

  function settle (id: number, outcome?: 'timeout' | 'error') {
    const w = waiting.get(id)
    if (!w) return
    waiting.delete(id)
    clearTimeout(w.timer)
    if (outcome === 'timeout') log.warn({ replies: w.repliers.size, expected: w.expected, ops: w.ops.length }, 'a replica did not answer a dispatch request in time')
    let delivered = 0
    w.ops.forEach((o, i) => { const hit = w.hits.has(i); if (hit) delivered++; o.resolve(hit) })
    opts.onRemote?.('delivered', delivered)
    const missed = w.ops.length - delivered
    if (missed > 0) opts.onRemote?.(outcome ?? 'not_delivered', missed)
  }

  function send (ops: Waiter['ops']) {
    const id = nextId++
    const w: Waiter = { ops, hits: new Set(), repliers: new Set(), expected: undefined, timer: setTimeout(() => settle(id, 'timeout'), opts.timeoutMs) }
    waiting.set(id, w)
    const request: Request = { from: brokerId, id, ops: ops.map((o) => o.op) }
    pub.publish(REQUESTS, JSON.stringify(request)).then((receivers) => {
      w.expected = receivers
      if (w.repliers.size >= receivers) settle(id)
    }, (err: Error) => {
      log.warn({ err: { message: err.message }, ops: ops.length }, 'dispatch request could not be sent to other replicas')
      settle(id, 'error')
    })
  }

  function flush () {
    scheduled = false
    const ops = batch
    batch = []
    for (let i = 0; i < ops.length; i += MAX_OPS) send(ops.slice(i, i + MAX_OPS))
  }

  function remote (op: Op): Promise<boolean> {
    if (closed || !opts.healthy()) return Promise.resolve(false)
    return new Promise((resolve) => {
      batch.push({ op, resolve })
      if (!scheduled) { scheduled = true; setImmediate(flush) }
    })
  }

  // Serve other replicas' requests for devices connected here. A request
  // seen before (a client library re-sending after a reconnect) is answered
  // again but not carried out twice.
  const served = new Map<string, Promise<number[]>>()
  async function serve (request: Request) {
    const key = `${request.from}:${request.id}`
    let carried = served.get(key)
    if (!carried) {
      carried = carryOut(request)
      served.set(key, carried)
      if (served.size > 10_000) served.delete(served.keys().next().value!)
    }
    const hits = await carried
    await pub.publish(repliesTo(request.from), JSON.stringify({ id: request.id, by: brokerId, hits } satisfies Reply))
  }
  async function carryOut (request: Request): Promise<number[]> {
    const hits: number[] = []
    await Promise.all(request.ops.map(async (op, i) => {
      if (!local.has(op.d)) return
      try {
        if (op.t === undefined) { await local.disconnect(op.d); hits.push(i) } else if (await local.deliver(op.d, op.t, op.p)) hits.push(i)
      } catch (err) {
        log.warn({ deviceId: op.d, err: { message: (err as Error).message } }, 'dispatch for another replica failed')
      }
    }))
    return hits
  }

  function onMessage (channel: string, message: string) {
    try {
      if (channel === REQUESTS) {
        const request = JSON.parse(message) as Request
        serve(request).catch((err: Error) => log.warn({ err: { message: err.message } }, 'could not answer a dispatch request'))
        return
      }
      const reply = JSON.parse(message) as Reply
      const w = waiting.get(reply.id)
      if (!w) return // too late: already settled by its timeout
      for (const i of reply.hits) w.hits.add(i)
      w.repliers.add(reply.by)
      if (w.expected !== undefined && w.repliers.size >= w.expected) settle(reply.id)
    } catch (err) {
      log.warn({ channel, err: { message: (err as Error).message } }, 'malformed dispatch message ignored')
    }
  }
  sub.on('message', onMessage)
  // Not awaited: with Redis away at start-up the replica still starts (not
  // ready); ioredis subscribes once connected and again after reconnects.
  sub.subscribe(REQUESTS, repliesTo(brokerId)).catch((err: Error) => log.warn({ err: { message: err.message } }, 'dispatch subscription failed'))

  return {
    deliver (deviceId, topic, payload) {
      if (!opts.healthy()) return Promise.resolve(false)
      return local.has(deviceId) ? local.deliver(deviceId, topic, payload) : remote({ d: deviceId, t: topic, p: payload })
    },
    async disconnect (deviceId) {
      // Also broadcast when the device is here: a take-over may be moving it.
      await Promise.all([local.disconnect(deviceId), remote({ d: deviceId })])
    },
    async endSession (deviceId) {
      // Disconnected on every replica first, then its session removed from
      // the store they share (Redis), through this replica's aedes.
      await this.disconnect(deviceId)
      await local.endSession(deviceId)
    },
    async close () {
      closed = true
      // Requests not sent yet are answered "not delivered" (PostgreSQL has them).
      const unsent = batch
      batch = []
      for (const o of unsent) o.resolve(false)
      // Leave the channel first, so other replicas stop counting on our
      // answers; with Redis away there is nothing to leave.
      if (sub.status === 'ready') {
        await withTimeout(sub.unsubscribe().catch(() => {}), 1000)
      }
      sub.off('message', onMessage)
      for (const id of [...waiting.keys()]) settle(id, 'error')
    }
  }
}
