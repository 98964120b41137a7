// The one module that reaches into aedes' and mqtt-packet's private state
// (issue 12). aedes' type definitions declare its public API only; fleetgate
// also needs a few fields they leave out. Each is read or replaced here, by a
// typed function, and nowhere else (test/broker/mqtt/aedes-internals.test.ts
// checks both: that every field is still where this module expects it on the
// pinned aedes, naming the one that moved, and that no other file reaches
// for one).
//
// Read against aedes 2.0.0-beta.1 (its lib/client.js, lib/handlers/*.js,
// aedes.js); each entry says what changed from 1.2.0:
//
// | field                         | used for                                                        | 1.2.0 → 2.0.0-beta.1 |
// |-------------------------------|-----------------------------------------------------------------|----------------------|
// | aedes.clients                 | the connection of a client id (take-over, dispatch, presence)   | same; a plain `{}` again (1.2.0: null-prototype, GHSA-52qw-whmv-87c5) — hardened below |
// | aedes.brokers                 | (hardened only)                                                 | likewise |
// | aedes.persistence             | the session store (deleting a device's session)                 | same (public in the docs, not in the types) |
// | aedes.publish(packet, client, done) | skipping routing of device messages                       | same signature; adds Message Expiry bookkeeping |
// | client._parser (mqtt-packet)  | packet-size-limit.ts: _parseLength, _parseString, _newPacket, _emitError, _pos, _list, packet | same parser (mqtt-packet 9.0.2); aedes now also reads `_parser.packet.length` after each parse |
// | client.deliver0 / deliverQoS  | connack-first.ts: holding live deliveries until the client is ready | same; still captured by addSubs at subscribe time |
// | client.req                    | the WebSocket upgrade request (listener, remote address)       | same |
// | client._disconnected          | a client that sent DISCONNECT (clean) vs a lost connection      | same, but a v5 DISCONNECT 0x04 (with will) leaves it false |
// | client.subscriptions          | the filters of a connection (session delivery, dispatch); `.si` its Subscription Identifier (subscription-identifiers.ts) | same shape; a plain `{}` again (1.2.0: null-prototype) — hardened below; `si` new |
// | client.duplicates             | (hardened only)                                                 | likewise |
// | client.connackSent            | a DISCONNECT may be sent (CONNACK is on the wire)               | same |
// | client.disconnect(opts, done) | v5 reason-coded DISCONNECT                                      | new; sends nothing before `connected`, and the close right after it can reset the connection (both fixed below) |
// | client._cleanStart            | —  (fleetgate reads the CONNECT packet in preConnect instead)   | new |
// | client._serverKeepAlive       | server-keep-alive.ts: a v5 Server Keep Alive without `keepaliveLimit` | new |
// | aedes.clearSessionExpiry / clearDelayedWill | session-expiry.ts: a session resumed on another replica | new |
//
// And what patches/aedes+2.0.0-beta.1.patch adds (applied by `npm install` /
// `npm ci` through patch-package, see package.json "postinstall"): the
// client's Receive Maximum and Maximum Packet Size honoured on the way out
// (lib/write.js; `client._outbound`, the `publishDiscarded` event), a resumed
// session's queue delivered whatever the new Session Expiry Interval
// (lib/handlers/connect.js emptyQueueFilter), and a CONNACK Reason String taken
// from `err.reasonString` of the authenticate hook. The guard below fails
// when the patch was not applied.
//
// What 1.2.0 fixed that the beta does not have (the beta branched before
// them) is put back here or in qos2-exactly-once.ts: null-prototype maps
// for ids and filters that come off the wire, the inbound QoS 2 window, the
// QoS 2 store of a clean session, and PUBREL's unhandled rejection.
import type { IncomingMessage } from 'node:http'
import type { Aedes, Client, PublishPacket } from 'aedes'
import mqttPacket, { type Packet } from 'mqtt-packet'

/** The pinned aedes version this module was read against (package.json pins it exactly). */
export const AEDES_VERSION = '2.0.0-beta.1'

// ---- the private shapes ----

/** mqtt-packet's Parser, as packet-size-limit.ts wraps it. */
export interface PacketParser {
  packet: { cmd?: string, length: number }
  _pos: number
  _list: { slice (start: number, end: number): Buffer }
  _parseLength (): boolean
  _parseString (maybeBuffer?: boolean): string | null
  _newPacket (): boolean
  _emitError (err: Error): void
}

/** A delivery function of a connection (aedes calls it for each routed message). */
export type Deliver = (packet: DeliveredPacket, cb: (err?: Error | null) => void) => void
export interface DeliveredPacket { brokerId?: string, brokerCounter?: number | string, topic?: string, qos?: number, properties?: Record<string, unknown> }

type RuntimePublish = (packet: PublishPacket, client: Client | null | ((err?: Error) => void), done?: (err?: Error) => void) => void

interface DisconnectOptions { reasonCode?: number, properties?: Record<string, unknown> }

interface ClientInternals {
  _parser: PacketParser
  deliver0: Deliver
  deliverQoS: Deliver
  req?: IncomingMessage
  _disconnected: boolean
  subscriptions: Record<string, unknown>
  duplicates: Record<string, number>
  connackSent: boolean
  errored: boolean
  closed: boolean
  version: number | null
  disconnectReasonCode: number | null
  _requestProblemInformation?: boolean
  _serverKeepAlive?: number
  /** Added by patches/aedes+2.0.0-beta.1.patch (outbound flow control). */
  _outbound?: { inflight: Set<number>, queue: unknown[] }
  /** Added by the patch: the read loop is parsing a slice (readSliceBytes). */
  _inBatch?: boolean
  disconnect (opts?: DisconnectOptions, done?: () => void): void
  close (done?: () => void): void
}

interface BrokerInternals {
  clients: Record<string, Client>
  brokers: Record<string, number>
  persistence: unknown
  publish: RuntimePublish
  clearSessionExpiry (clientId: string): void
  clearDelayedWill (clientId: string): void
  /** Read by the patched read loop (patches/aedes+2.0.0-beta.1.patch): at most this many bytes of a socket parsed at once; 0 = all that is buffered. */
  readSliceBytes?: (client: Client) => number
}

const brokerOf = (aedes: Aedes) => aedes as unknown as BrokerInternals
const internalsOf = (client: Client) => client as unknown as ClientInternals

// ---- the guard: every field where this module expects it ----

const PARSER_METHODS = ['_parseLength', '_parseString', '_newPacket', '_emitError'] as const

/**
 * What is missing on a broker (after createBroker) and on a connection
 * (fresh from aedes.handle, before its CONNECT): one line per field, naming
 * it. Empty when everything this module uses is in place.
 */
export function missingInternals (aedes: Aedes, client?: Client): string[] {
  const problems: string[] = []
  const b = brokerOf(aedes) as unknown as Record<string, unknown>
  const expect = (owner: string, value: unknown, type: string, field: string) => {
    const actual = value === null ? 'null' : typeof value
    if (actual !== type) problems.push(`${owner}.${field}: expected ${type}, found ${actual}`)
  }
  expect('aedes', b.clients, 'object', 'clients')
  expect('aedes', b.brokers, 'object', 'brokers')
  expect('aedes', b.persistence, 'object', 'persistence')
  expect('aedes', b.publish, 'function', 'publish')
  expect('aedes', b.clearSessionExpiry, 'function', 'clearSessionExpiry')
  expect('aedes', b.clearDelayedWill, 'function', 'clearDelayedWill')
  if (client) {
    const c = client as unknown as Record<string, unknown>
    expect('client', c._parser, 'object', '_parser')
    const parser = c._parser as Record<string, unknown> | undefined
    for (const m of PARSER_METHODS) expect('client._parser', parser?.[m], 'function', m)
    expect('client._parser', parser?._list, 'object', '_list')
    expect('client', c.deliver0, 'function', 'deliver0')
    expect('client', c.deliverQoS, 'function', 'deliverQoS')
    expect('client', c.subscriptions, 'object', 'subscriptions')
    expect('client', c.duplicates, 'object', 'duplicates')
    expect('client', c._disconnected, 'boolean', '_disconnected')
    expect('client', c.connackSent, 'boolean', 'connackSent')
    expect('client', c.errored, 'boolean', 'errored')
    expect('client', c.disconnect, 'function', 'disconnect')
    if (!('req' in c)) problems.push('client.req: expected the property (undefined outside WebSocket), found none')
    if (!('disconnectReasonCode' in c)) problems.push('client.disconnectReasonCode: expected the property, found none')
    if ('_serverKeepAlive' in c) problems.push('client._serverKeepAlive: expected no value before CONNECT (server-keep-alive.ts sets it), found one')
    if (typeof c._inBatch !== 'boolean') problems.push('client._inBatch: expected a boolean from patches/aedes+2.0.0-beta.1.patch (the sliced read loop), found ' + (c._inBatch === undefined ? 'none (the patch was not applied: run `npx patch-package`)' : typeof c._inBatch))
    const outbound = c._outbound as { inflight?: unknown, queue?: unknown } | undefined
    if (!(outbound?.inflight instanceof Set) || !Array.isArray(outbound.queue)) {
      problems.push('client._outbound: expected { inflight: Set, queue: [] } from patches/aedes+2.0.0-beta.1.patch, found ' + (outbound === undefined ? 'none (the patch was not applied: run `npx patch-package`)' : typeof outbound))
    }
  }
  return problems
}

/** Throws, naming every field that moved, when this aedes is not the one this module was read against. */
export function assertInternals (aedes: Aedes, client?: Client): void {
  const problems = missingInternals(aedes, client)
  if (problems.length > 0) {
    throw new Error(`aedes internals fleetgate relies on have changed (broker/mqtt/aedes-internals.ts, read against aedes ${AEDES_VERSION}): ${problems.join('; ')}`)
  }
}

// ---- the broker ----

/**
 * GHSA-52qw-whmv-87c5, fixed in aedes 1.2.0 and missing from the beta:
 * client ids and broker ids from the wire key plain objects, so an id such
 * as `constructor` finds Object.prototype's member (a take-over of it
 * throws). Null-prototype maps, as 1.2.0 has them.
 */
export function hardenBroker (aedes: Aedes): void {
  const b = brokerOf(aedes)
  b.clients = Object.assign(Object.create(null) as Record<string, Client>, b.clients)
  b.brokers = Object.assign(Object.create(null) as Record<string, number>, b.brokers)
}

/** The connections of this process by client id (aedes.clients). */
export function clientsOf (aedes: Aedes): Record<string, Client> {
  return brokerOf(aedes).clients
}

export function clientById (aedes: Aedes, id: string): Client | undefined {
  return brokerOf(aedes).clients[id]
}

/** The session store aedes was given (aedes.persistence; documented, not typed). */
export function persistenceOf<P> (aedes: Aedes): P {
  return brokerOf(aedes).persistence as P
}

/**
 * Lets `skip(packet, client)` end a publish before aedes routes it (the
 * retained store, offline queues, mqemitter); aedes' own callers (PUBLISH
 * handler, wills, $SYS) all go through aedes.publish.
 */
export function interceptPublish (aedes: Aedes, skip: (packet: PublishPacket, client: Client | null) => boolean): void {
  const b = brokerOf(aedes)
  const route = b.publish.bind(aedes)
  b.publish = function publish (packet, client, done) {
    if (client && typeof client !== 'function' && skip(packet, client)) {
      done?.()
      return
    }
    route(packet, client, done)
  }
}

/**
 * Rewrites every message before aedes routes it (after interceptPublish's
 * skip): client PUBLISHes, wills (aedes publishes them through
 * aedes.publish, also from another replica's sweep) and the broker's own.
 */
export function rewritePublish (aedes: Aedes, rewrite: (packet: PublishPacket) => PublishPacket): void {
  const b = brokerOf(aedes)
  const route = b.publish.bind(aedes)
  b.publish = function publish (packet, client, done) {
    route(rewrite(packet), client, done)
  }
}

/**
 * A message not sent to one client because of the limits it set on CONNECT
 * (the patched lib/write.js): larger than its Maximum Packet Size, or its
 * Receive Maximum window full with too many waiting.
 */
export function onPublishDiscarded (aedes: Aedes, fn: (client: Client, packet: PublishPacket, reason: 'packet_too_large' | 'queue_full') => void): void {
  aedes.on('publishDiscarded' as 'closed', fn as unknown as () => void)
}

/**
 * How much of a socket aedes parses at once (the patched read loop): `slice`
 * is asked before each read; 0 parses everything buffered, as stock aedes.
 */
export function sliceReads (aedes: Aedes, slice: (client: Client) => number): void {
  brokerOf(aedes).readSliceBytes = slice
}

/** Cancels this broker's session-expiry and will-delay timers of a client id (its session was resumed elsewhere). */
export function cancelSessionTimers (aedes: Aedes, clientId: string): void {
  const b = brokerOf(aedes)
  b.clearSessionExpiry(clientId)
  b.clearDelayedWill(clientId)
}

// ---- a connection ----

/** Null-prototype subscriptions and duplicates maps (see hardenBroker). Called before the CONNECT is read. */
export function hardenClient (client: Client): void {
  const c = internalsOf(client)
  c.subscriptions = Object.assign(Object.create(null) as Record<string, unknown>, c.subscriptions)
  c.duplicates = Object.assign(Object.create(null) as Record<string, number>, c.duplicates)
}

/** mqtt-packet's parser of this connection (packet-size-limit.ts). */
export function parserOf (client: Client): PacketParser {
  const parser = internalsOf(client)._parser as PacketParser | undefined
  const missing = PARSER_METHODS.filter((m) => typeof parser?.[m] !== 'function')
  if (!parser || missing.length > 0) {
    throw new Error(`aedes client has no mqtt-packet parser with ${missing.join(', ')}: packet limits cannot be enforced with this aedes version`)
  }
  return parser
}

/** Replaces the connection's two delivery functions (connack-first.ts). */
export function wrapDeliveries (client: Client, wrap: (deliver: Deliver) => Deliver): void {
  const c = internalsOf(client)
  c.deliver0 = wrap(c.deliver0)
  c.deliverQoS = wrap(c.deliverQoS)
}

/** The HTTP upgrade request of a WebSocket connection (undefined on TCP and TLS). */
export function upgradeRequestOf (client: Client): IncomingMessage | undefined {
  return internalsOf(client).req
}

/** True when the client ended the connection with a DISCONNECT (no will). */
export function sentDisconnect (client: Client): boolean {
  return internalsOf(client)._disconnected
}

/** The MQTT 5 Subscription Identifier of each of this connection's filters that has one. */
export function subscriptionIdentifiers (client: Client): Array<[filter: string, id: number]> {
  const out: Array<[string, number]> = []
  const subs = internalsOf(client).subscriptions as Record<string, { si?: number } | undefined>
  for (const filter in subs) {
    const si = subs[filter]?.si
    if (typeof si === 'number') out.push([filter, si])
  }
  return out
}

/** The topic filters this connection is subscribed to. */
export function subscriptionFilters (client: Client): string[] {
  return Object.keys(internalsOf(client).subscriptions)
}

/** The protocol level of the CONNECT (3, 4 or 5; null before it). */
export function protocolVersionOf (client: Client): number | null {
  return internalsOf(client).version
}

/** The v5 client did not set Request Problem Information to 0 [MQTT-3.1.2-29]. */
export function wantsProblemInformation (client: Client): boolean {
  return internalsOf(client)._requestProblemInformation !== false
}

/**
 * MQTT 5 Server Keep Alive [MQTT-3.2.2-21]: set before aedes handles the
 * CONNECT (in preConnect), aedes times the connection by it and sends it in
 * CONNACK, as it does for its `keepaliveLimit` option, which would also
 * refuse every 3.1.1 CONNECT with keepalive 0.
 */
export function imposeServerKeepAlive (client: Client, seconds: number): void {
  internalsOf(client)._serverKeepAlive = seconds
}

/** The reason code of the DISCONNECT the broker sent (v5), or null. */
export function disconnectReasonOf (client: Client): number | null {
  return internalsOf(client).disconnectReasonCode
}

/**
 * Ends a connection with a reason code: a v5 client whose CONNACK is on the
 * wire gets DISCONNECT with that code (and a reason string when given) before
 * the close [MQTT-3.14.2]; any other is closed.
 */
export function disconnectWith (client: Client, reasonCode: number, reasonString?: string, done?: () => void): void {
  internalsOf(client).disconnect({ reasonCode, ...(reasonString ? { properties: { reasonString } } : {}) }, done)
}

/**
 * For a connection aedes is about to destroy in the same tick (its error
 * path: keepalive timeout, a packet refused at the parser): a v5 client whose
 * CONNACK is on the wire is written the DISCONNECT at once, as one buffer
 * straight to the socket. disconnectWith() would be lost there: aedes writes
 * through mqtt-packet's writeToStream, which corks the socket until the next
 * tick, and the destroy discards what is still corked.
 */
export function disconnectBeforeDestroy (client: Client, reasonCode: number, reasonString?: string): void {
  const c = internalsOf(client)
  if (c.version !== 5 || !c.connackSent || c.closed || c.errored || client.conn.destroyed) return
  if (c.disconnectReasonCode !== null && c.disconnectReasonCode !== undefined) return // one DISCONNECT only [MQTT-3.14.4-1]
  c.disconnectReasonCode = reasonCode
  const packet = { cmd: 'disconnect', reasonCode, ...(reasonString ? { properties: { reasonString } } : {}) } as Packet
  let bytes: Buffer | undefined
  try { bytes = mqttPacket.generate(packet, { protocolVersion: 5 }) } catch {}
  if (bytes) {
    client.conn.write(bytes)
    lingerOnDestroy(client)
  }
}

// How long a connection the broker sent DISCONNECT on may stay half-closed
// while what the client still sends is read and dropped.
const LINGER_MS = 2000

/**
 * After the broker's DISCONNECT, aedes destroys the socket. With bytes from
 * the client still unread (a client that pipelines PUBLISHes, as one over
 * Receive Maximum does), closing a TCP socket sends RST instead of FIN, and
 * the client's kernel then drops what it had not read yet: the DISCONNECT
 * with its reason code, seen under load (issue 12). Instead, the next destroy
 * of this connection half-closes it (FIN after the DISCONNECT) and reads and
 * drops what still comes, for up to LINGER_MS, then destroys it. Nothing of
 * it reaches aedes (its reading stopped at close).
 */
function lingerOnDestroy (client: Client): void {
  const conn = client.conn as Client['conn'] & { fgLingering?: boolean }
  if (conn.fgLingering) return
  conn.fgLingering = true
  const destroy = conn.destroy.bind(conn)
  conn.destroy = function lingeringDestroy () {
    conn.destroy = destroy
    if (conn.destroyed) return conn
    const timer = setTimeout(() => destroy(), LINGER_MS)
    timer.unref()
    conn.once('close', () => clearTimeout(timer))
    conn.on('error', () => destroy())
    conn.end()
    conn.resume()
    return conn
  } as typeof conn.destroy
}

/**
 * aedes' client.disconnect() writes the DISCONNECT only once the connection
 * is `connected`, which it becomes after the stored queue is replayed, so a
 * v5 client refused between its CONNACK and then (a bad topic alias, a packet
 * too large, a take-over) got a bare close (issue 12). With this, a v5 client
 * gets the DISCONNECT whenever its CONNACK has been written.
 */
export function sendDisconnectOnceConnackWritten (client: Client): void {
  const c = internalsOf(client)
  const disconnect = c.disconnect.bind(client)
  c.disconnect = function disconnectAfterConnack (opts?: DisconnectOptions | (() => void), done?: () => void) {
    if (typeof opts === 'function') { done = opts; opts = {} }
    const o = opts ?? {}
    const connected = (client as { connected: boolean }).connected
    if (c.version === 5 && c.connackSent && !c.closed && !c.errored) lingerOnDestroy(client)
    if (c.version === 5 && !connected && c.connackSent && !c.closed && !c.errored) {
      c.disconnectReasonCode = o.reasonCode ?? 0
      const packet = { cmd: 'disconnect', reasonCode: o.reasonCode ?? 0, ...(o.properties ? { properties: o.properties } : {}) } as Packet
      let bytes: Buffer | undefined
      try { bytes = mqttPacket.generate(packet, { protocolVersion: 5 }) } catch {}
      if (bytes) client.conn.write(bytes)
      c.close(done)
      return
    }
    disconnect(o, done)
  } as ClientInternals['disconnect']
}

/**
 * Answers a QoS 1/2 PUBLISH with a reason code of fleetgate's choosing
 * (PUBACK, or PUBREC for QoS 2) and keeps aedes from answering or routing
 * it: aedes' own non-success answer is always 0x87 (its `_notAuthorized`
 * flag, read in lib/handlers/publish.js, also skips its PUBACK and publish).
 */
export function answerPublish (client: Client, packet: PublishPacket, reasonCode: number, reasonString?: string): void {
  ;(packet as unknown as { _notAuthorized: boolean })._notAuthorized = true
  if (packet.qos === 0 || packet.messageId === undefined) return
  const properties = reasonString && wantsProblemInformation(client) ? { reasonString } : undefined
  const ack = { cmd: packet.qos === 1 ? 'puback' : 'pubrec', messageId: packet.messageId, reasonCode, ...(properties ? { properties } : {}) } as Packet
  client.conn.write(mqttPacket.generate(ack, { protocolVersion: 5 }))
}
