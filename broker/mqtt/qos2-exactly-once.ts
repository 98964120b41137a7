// QoS 2 is exactly once [MQTT-4.3.3], for devices and for anonymous clients.
//
// - A PUBLISH re-sent with DUP while its packet id still awaits PUBREL must
//   get PUBREC again but not be stored again. aedes makes that check only
//   after authorizePublish, where a device's message has already been
//   stored, so run() makes it first, per connection: a repeat of a packet id
//   whose first copy is still being stored waits for that outcome; a repeat
//   of one that was stored is answered at once (aedes then writes PUBREC). A
//   persistent session resumed on a new connection finds its stored ids in
//   the session store.
// - A clean session starts with no QoS 2 state [MQTT-3.1.2-6]. aedes 1.2.0
//   cleared the store's incoming packets on a clean CONNECT; the 2.0 beta
//   does not, and aedes-persistence-redis 11 has no way to (issue 12: the
//   next QoS 2 PUBLISH reusing such an id was answered PUBREC and never
//   delivered, in 3.1.1 too). So for a clean connection only the ids stored
//   by that connection count as stored, and what it leaves unreleased is
//   deleted when it ends.
// - The number of ids awaiting PUBREL is bounded per connection (aedes 1.2.0
//   did it with maxInflightInbound; the beta does not): `awaiting()` feeds
//   the inbound window of authorize-publish.ts.
// - PUBREL of an id the store no longer has rejects inside aedes' handler,
//   unhandled (it ended the process; 1.2.0 caught it): the wrapped delete
//   never rejects.
import type { Client } from 'aedes'

/** The part of aedes' persistence interface wrapped here. */
export interface IncomingStore {
  incomingStorePacket (client: object, packet: { messageId?: number }): Promise<void>
  incomingGetPacket (client: object, packet: { messageId?: number }): Promise<unknown>
  incomingDelPacket (client: object, packet: { messageId?: number }): Promise<void>
}

type Done = (err?: Error | null) => void
/** `release`: the flow ended without PUBREL to come (a PUBREC with a failure reason code). */
type Stored = (err?: Error | null, release?: boolean) => void
type Qos2State = Done[] | 'stored'

// Per connection; the Map and Set are made on first use, because most
// connections never send QoS 2 and an idle fleet's memory is counted per
// connection (issue 15).
class Connection {
  private idMap?: Map<number, Qos2State>
  private stored?: Set<number>
  /** CONNECT with Clean Session (3.1.1) or Clean Start (5). */
  constructor (readonly clean: boolean) {}
  /** Ids seen by run(): being stored (waiters) or stored, awaiting PUBREL. */
  get ids (): Map<number, Qos2State> { return (this.idMap ??= new Map()) }
  get idCount (): number { return this.idMap?.size ?? 0 }
  hasId (id: number): boolean { return this.idMap?.has(id) ?? false }
  /** Ids this connection stored in the session store (for a clean one, the only ones that count). */
  get storedHere (): Set<number> { return (this.stored ??= new Set()) }
  storedHereHas (id: number): boolean { return this.stored?.has(id) ?? false }
  /** Takes the stored ids (for deletion), leaving none. */
  takeStored (): number[] {
    const ids = this.stored ? [...this.stored] : []
    this.stored = undefined
    return ids
  }

  forget (id: number): void {
    this.idMap?.delete(id)
    this.stored?.delete(id)
  }
}

export interface ExactlyOnce {
  /** Called before aedes handles the CONNECT. */
  connecting (client: Client, clean: boolean): void
  /** Runs `store` once per packet id; repeats wait for, or get, its outcome. */
  run (client: Client, packet: { qos: number, messageId?: number }, store: (done: Stored) => void, done: Done, onDuplicate: () => void): void
  /** Packet ids of this connection awaiting PUBREL (or being stored). */
  awaiting (client: Client): number
  /** This QoS 2 packet id is being stored or awaits PUBREL (a repeat, not a new message). */
  knows (client: Client, messageId: number): boolean
  /** The connection ended: a clean session's unreleased ids leave the store. */
  closed (client: Client, sessionEnds: boolean): void
}

export function createExactlyOnce<S extends IncomingStore> (store: S): { store: S, exactlyOnce: ExactlyOnce } {
  const connections = new WeakMap<object, Connection>()
  const get = store.incomingGetPacket.bind(store)
  const put = store.incomingStorePacket.bind(store)
  const del = store.incomingDelPacket.bind(store)
  store.incomingStorePacket = async (client, packet) => {
    await put(client, packet)
    connections.get(client)?.storedHere.add(packet.messageId!)
  }
  store.incomingGetPacket = async (client, packet) => {
    const c = connections.get(client)
    if (c?.clean && !c.storedHereHas(packet.messageId!)) throw new Error('no such packet')
    return await get(client, packet)
  }
  store.incomingDelPacket = async (client, packet) => {
    const c = connections.get(client)
    c?.forget(packet.messageId!)
    try { await del(client, packet) } catch {}
  }

  const exactlyOnce: ExactlyOnce = {
    connecting (client, clean) {
      connections.set(client, new Connection(clean))
    },
    run (client, packet, storeIt, done, onDuplicate) {
      // A will (no packet id) is published once, when its connection ends.
      const c = connections.get(client)
      if (packet.qos !== 2 || packet.messageId === undefined || !c) return storeIt(done)
      const id = packet.messageId
      const state = c.ids.get(id)
      if (state !== undefined) {
        onDuplicate()
        if (state === 'stored') return done(null)
        state.push(done)
        return
      }
      const waiters: Done[] = [done]
      c.ids.set(id, waiters)
      const finish: Stored = (err, release) => {
        if (err || release) c.ids.delete(id)
        else if (c.ids.get(id) === waiters) c.ids.set(id, 'stored')
        for (const w of waiters) w(err)
      }
      if (c.clean) return storeIt(finish)
      // Stored by an earlier connection of this session, still awaiting PUBREL?
      get(client, { messageId: id }).then(() => { onDuplicate(); finish(null) }, () => storeIt(finish))
    },
    knows (client, messageId) {
      return connections.get(client)?.hasId(messageId) ?? false
    },
    awaiting (client) {
      return connections.get(client)?.idCount ?? 0
    },
    closed (client, sessionEnds) {
      const c = connections.get(client)
      if (!c || !sessionEnds) return
      for (const id of c.takeStored()) del(client, { messageId: id }).catch(() => {})
    }
  }
  return { store, exactlyOnce }
}
