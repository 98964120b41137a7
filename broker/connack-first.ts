// [MQTT-3.2.0-1] The first packet the server sends a client is CONNACK; the
// messages stored for a persistent session come next, in order, then live
// traffic. aedes does not hold to that for live messages: a resuming session
// gets its subscriptions back (restoreSubs) before the CONNACK is written and
// before its stored queue is replayed, and a message routed to one of those
// subscriptions meanwhile is written at once. In one process the window is
// tiny; in cluster mode it is not, because a replica hears even its own
// publishes back from Redis some time later. So a device that resumes its
// session on another replica just after messages were queued for it can be
// sent a PUBLISH before its CONNACK (mqtt.js then stalls: it holds the PUBACK
// until connected and never reads the CONNACK behind it, so the connection
// hangs until its connect timeout), and gets each queued message twice (once
// replayed, once live).
//
// Both wrappers here close that window, one connection at a time:
// - holdUntilReady(): the connection's live deliveries wait, in order, until
//   aedes reports it ready (CONNACK written and stored queue replayed);
// - markReplayed(): each message replayed from the stored queue is recorded
//   in aedes' own per-connection duplicate filter (the highest counter seen
//   per originating broker), so the live copy of it is dropped when the
//   held deliveries run.
import type { Client } from 'aedes'

type Deliver = (packet: unknown, cb: (err?: Error | null) => void) => void

interface DeliveringClient {
  deliver0: Deliver
  deliverQoS: Deliver
  duplicates: Record<string, number>
  closed?: boolean
}

interface StoredPacket { brokerId?: string, brokerCounter?: number }

const HELD = Symbol('fleetgate.heldDeliveries')

/** Called for each new connection, before its CONNECT is handled. */
export function holdUntilReady (client: Client): void {
  const c = client as unknown as DeliveringClient & { [HELD]?: Array<() => void> }
  const held: Array<() => void> = []
  c[HELD] = held
  const wrap = (deliver: Deliver): Deliver => function heldDeliver (packet, cb) {
    if (c[HELD] === undefined) return deliver(packet, cb)
    // The callback is kept, so routing of this message waits for the
    // connection too (for a few ms: its session is being replayed).
    held.push(() => deliver(packet, cb))
  }
  // addSubs() captures these when the subscription is made, so the wrappers
  // stay in place for the connection's life and pass through once released.
  c.deliver0 = wrap(c.deliver0)
  c.deliverQoS = wrap(c.deliverQoS)
}

/**
 * The connection is ready (aedes 'clientReady'), or gone: held deliveries
 * run in order. For a closed connection they end at once, undelivered (a
 * persistent session keeps them in its stored queue).
 */
export function releaseHeld (client: Client): void {
  const c = client as unknown as DeliveringClient & { [HELD]?: Array<() => void> }
  const held = c[HELD]
  if (held === undefined) return
  c[HELD] = undefined
  for (const run of held) run()
}

/** Wraps the session store's replay of a connection's queue (aedes' emptyQueue). */
export function markReplayed<P extends { outgoingStream (client: Client): AsyncIterable<StoredPacket> }> (persistence: P): P {
  const outgoingStream = persistence.outgoingStream.bind(persistence)
  persistence.outgoingStream = function markedOutgoingStream (client: Client) {
    const duplicates = (client as unknown as DeliveringClient).duplicates
    const source = outgoingStream(client)
    return (async function * () {
      for await (const packet of source) {
        const id = packet.brokerId
        const counter = packet.brokerCounter
        if (id && typeof counter === 'number' && (duplicates[id] ?? 0) < counter) duplicates[id] = counter
        yield packet
      }
    })()
  }
  return persistence
}
