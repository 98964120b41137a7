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
// The wrappers here close that window, one connection at a time:
// - holdUntilReady(): the connection's live deliveries wait, in order, until
//   aedes reports it ready (CONNACK written and stored queue replayed);
// - markReplayed(): each message replayed from the stored queue is noted by
//   its identity (originating broker and counter), and the live copy of
//   exactly that message is dropped when it comes, held or later. (Not
//   through aedes' own duplicate filter, which keeps only the highest
//   counter per broker and would drop older messages that were never queued,
//   such as QoS 0 ones.)
import type { Client } from 'aedes'
import { wrapDeliveries, type Deliver, type DeliveredPacket as StoredPacket } from './aedes-internals.js'

interface ConnectionState {
  /** Deliveries waiting for the connection to be ready; undefined once it is. */
  held: Array<{ deliver: Deliver, packet: StoredPacket }> | undefined
  /** Identities of replayed messages whose live copy has not come yet. */
  replayed: Set<string>
}

const STATE = Symbol('fleetgate.connackFirst')
// A live copy comes within moments of the replay (it is the same publish,
// routed); after this, what is left in `replayed` will never be matched.
const REPLAYED_TTL_MS = 30_000
// Live deliveries held per connection at most. The hold lasts as long as the
// replay, which waits for the client's PUBACKs when its Receive Maximum is
// reached (patches/, outbound-limits.ts): a client that does not acknowledge
// must not make the broker hold its live traffic without bound. Past this a
// held message is dropped (a persistent session still has it in its stored
// queue) and reported, as the outbound queue does.
export const MAX_HELD = 1000

type Tracked = Client & { [STATE]?: ConnectionState }

const identity = (p: StoredPacket): string | undefined =>
  p.brokerId && typeof p.brokerCounter === 'number' ? `${p.brokerId}:${p.brokerCounter}` : undefined

/** True (once) for the live copy of a message replayed from the stored queue. */
function isReplayedCopy (state: ConnectionState, packet: StoredPacket): boolean {
  if (state.replayed.size === 0) return false
  const id = identity(packet)
  return id !== undefined && state.replayed.delete(id)
}

/** Called for each new connection, before its CONNECT is handled; `dropped` hears of each message not held for lack of room. */
export function holdUntilReady (client: Client, dropped: (packet: StoredPacket) => void = noop): void {
  const c = client as Tracked
  const state: ConnectionState = { held: [], replayed: new Set() }
  c[STATE] = state
  // addSubs() captures these when a subscription is made, so the wrappers
  // stay in place for the connection's life and pass through once released.
  wrapDeliveries(client, (deliver: Deliver): Deliver => function heldDeliver (packet, cb) {
    if (isReplayedCopy(state, packet)) { setImmediate(cb); return }
    if (state.held === undefined) return deliver(packet, cb)
    // Routing is not held up meanwhile: the message is this connection's to
    // deliver now (a persistent session also has it in its stored queue).
    if (state.held.length < MAX_HELD) state.held.push({ deliver, packet })
    else dropped(packet)
    setImmediate(cb)
  })
}

/**
 * Ends the hold: when aedes reports the connection ready ('clientReady'),
 * the held deliveries run in order; when the connection closed first
 * (`deliver` false), they are dropped.
 */
export function releaseHeld (client: Client, deliver = true): void {
  const state = (client as Tracked)[STATE]
  const held = state?.held
  if (state === undefined || held === undefined) return
  state.held = undefined
  if (deliver) {
    for (const h of held) {
      // Most held messages are live copies of what was just replayed.
      if (isReplayedCopy(state, h.packet)) continue
      // A failed write is reported and handled by aedes (the connection closes).
      try { h.deliver(h.packet, noop) } catch {}
    }
  }
  if (state.replayed.size > 0) setTimeout(() => state.replayed.clear(), REPLAYED_TTL_MS).unref()
}

/** Wraps the session store's replay of a connection's queue (aedes' emptyQueue). */
export function markReplayed<P extends { outgoingStream (client: Client): AsyncIterable<StoredPacket> }> (persistence: P): P {
  const outgoingStream = persistence.outgoingStream.bind(persistence)
  persistence.outgoingStream = function markedOutgoingStream (client: Client) {
    const replayed = (client as Tracked)[STATE]?.replayed
    const source = outgoingStream(client)
    if (replayed === undefined) return source
    return (async function * () {
      for await (const packet of source) {
        const id = identity(packet)
        if (id !== undefined) replayed.add(id)
        yield packet
      }
    })()
  }
  return persistence
}

function noop (): void {}
