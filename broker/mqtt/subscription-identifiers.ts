// [MQTT-3.3.4-4]: a message that matches several subscriptions of one MQTT 5
// client, delivered as one copy, carries the Subscription Identifiers of all
// of them. aedes 2.0.0-beta.1 delivers one copy (its per-connection
// duplicate filter drops the others) carrying only the identifier of the
// subscription that happened to route it first. Here each delivery to a v5
// connection is given the identifiers of every filter of that connection
// matching its topic, before aedes' filter keeps the first copy.
//
// Not for a message sent with the retain flag: a retained message sent
// because of a new subscription is that subscription's alone (aedes sets its
// identifier), and one is not told apart from a live message forwarded with
// Retain As Published.
import type { Client } from 'aedes'
import { protocolVersionOf, subscriptionIdentifiers, wrapDeliveries, type Deliver } from './aedes-internals.js'

/** MQTT topic filter matching [MQTT-4.7]: `+` one level, `#` the rest, `$` topics not matched by a leading wildcard. */
export function filterMatches (filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

/** Called for each new connection, before its CONNECT is handled. */
export function carryAllSubscriptionIdentifiers (client: Client): void {
  wrapDeliveries(client, (deliver: Deliver): Deliver => function deliverWithIdentifiers (packet, cb) {
    if (protocolVersionOf(client) !== 5 || typeof packet.topic !== 'string' || (packet as { retain?: boolean }).retain) return deliver(packet, cb)
    const ids: number[] = []
    for (const [filter, id] of subscriptionIdentifiers(client)) {
      if (filterMatches(filter, packet.topic) && !ids.includes(id)) ids.push(id)
    }
    if (ids.length === 0) return deliver(packet, cb)
    const current = packet.properties?.subscriptionIdentifier
    if (ids.length === 1 && current === ids[0]) return deliver(packet, cb)
    // A copy: the packet's properties are shared with every other subscriber.
    deliver({ ...packet, properties: { ...packet.properties, subscriptionIdentifier: ids.length === 1 ? ids[0] : ids } }, cb)
  })
}
