// Removes a client id's stored MQTT session through aedes' persistence API
// (in memory, or Redis in cluster mode), the way a Clean Session CONNECT
// would [MQTT-3.1.2-6], for a device that is deleted (issue 11: a device
// created again with the same id resumed the old session, sessionPresent=1,
// with its subscriptions and queued messages).
//
// Queued messages are removed as aedes' own emptyQueue does for a clean
// session: each gets a packet id (outgoingUpdate), then is cleared by it
// (outgoingClearMessageId); the Redis store can clear a queued message only
// by a packet id it has seen.

/** The part of aedes' persistence interface used here (aedes-persistence and aedes-persistence-redis). */
export interface SessionPersistence {
  cleanSubscriptions (client: { id: string }): Promise<void>
  cleanIncoming? (client: { id: string }): Promise<void>
  delWill (client: { id: string }): Promise<unknown>
  outgoingStream (client: { id: string }): AsyncIterable<Record<string, unknown>>
  outgoingUpdate (client: { id: string }, packet: Record<string, unknown>): Promise<void>
  outgoingClearMessageId (client: { id: string }, packet: Record<string, unknown>): Promise<unknown>
}

export async function endStoredSession (persistence: SessionPersistence, clientId: string): Promise<void> {
  const client = { id: clientId }
  await persistence.cleanSubscriptions(client)
  await persistence.cleanIncoming?.(client)
  await persistence.delWill(client)
  let messageId = 0
  for await (const queued of persistence.outgoingStream(client)) {
    const packet = { ...queued, messageId: (messageId++ % 65535) + 1 }
    try {
      await persistence.outgoingUpdate(client, packet)
    } catch {
      continue // cleared meanwhile ("no such packet")
    }
    await persistence.outgoingClearMessageId(client, packet)
  }
}
