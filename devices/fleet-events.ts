// The fleet's events (issue 13): what an operator's live stream
// (GET /v1/events) and the console see. One shape for every kind:
//
//   { id?, kind, type, at, deviceId?, data }
//
// - kind: telemetry | presence | config | command | dead_letter | rollout | device
// - type: what happened within the kind (e.g. config: desired, applied, failed)
// - id: only for the kinds stored in fleet_events (migration 006), which a
//   stream resumes with Last-Event-ID; telemetry and presence are live only.
//
// Producers hand events to an EventHub. Stored kinds are first written in
// the transaction of their change (devices/change-recorder.ts) and published
// after COMMIT, so nobody sees an event for a change that rolled back.
export const EVENT_KINDS = ['telemetry', 'presence', 'config', 'command', 'dead_letter', 'rollout', 'device'] as const
export type EventKind = typeof EVENT_KINDS[number]

/** The kinds kept in PostgreSQL (fleet_events) and resumed with Last-Event-ID. */
export const STORED_KINDS: ReadonlySet<EventKind> = new Set(['config', 'command', 'dead_letter', 'rollout', 'device'])

/**
 * The event's JSON text, when its producer (telemetry: the reading is already
 * JSON text) or the cluster bus (the message it arrived in) already has it.
 * A symbol key: JSON.stringify and the event's shape ignore it. Events are
 * immutable once published, so the text is computed at most once per event
 * whatever the number of streams (eventJson below).
 */
export const EVENT_JSON: unique symbol = Symbol('fleetgate.eventJson')

export interface FleetEvent {
  /** fleet_events.id as a decimal string; absent for live-only kinds. */
  id?: string
  kind: EventKind
  type: string
  /** ISO 8601. */
  at: string
  deviceId?: string
  data: Record<string, unknown>
  [EVENT_JSON]?: string
}

/** An event before it is stored: `at` defaults to now. */
export type NewEvent = Omit<FleetEvent, 'id' | 'at' | typeof EVENT_JSON> & { at?: string }

/** The event as one line of JSON (no CR/LF: it is an SSE data line and a line of a bus message), serialised once. */
export function eventJson (event: FleetEvent): string {
  let json = event[EVENT_JSON]
  if (json === undefined) {
    json = JSON.stringify(event)
    event[EVENT_JSON] = json
  }
  return json
}

export function isEventKind (s: string): s is EventKind {
  return (EVENT_KINDS as readonly string[]).includes(s)
}

export type EventListener = (event: FleetEvent) => void

export interface EventHub {
  /** Hands committed events to every stream of every replica. Never throws, never waits. */
  publish (events: FleetEvent[]): void
  /**
   * Every event this replica receives (its own and other replicas'); returns
   * the unsubscribe. `kinds`: only these (default: all); what the listeners
   * want decides `wants()`.
   */
  subscribe (listener: EventListener, kinds?: Iterable<EventKind>): () => void
  /**
   * Whether any stream (on any replica) currently wants this kind. Producers
   * of high-volume live kinds (telemetry) build no events when nobody listens.
   */
  wants (kind: EventKind): boolean
}

/** The local part of a hub: listeners of this process, counted by kind. */
export interface LocalEventHub extends EventHub {
  readonly listeners: number
  /** Whether a listener of this process wants the kind. */
  wantsLocally (kind: EventKind): boolean
  /** Called when the set of kinds wanted by this process's listeners changes. */
  onWantsChanged (fn: () => void): void
}

/** The hub of one process: subscribers of this process only. */
export function createLocalEventHub (): LocalEventHub {
  // Per kind, the listeners that want it: publish touches only those.
  const byKind = new Map<EventKind, Set<EventListener>>(EVENT_KINDS.map((k) => [k, new Set()]))
  let count = 0
  const changed: Array<() => void> = []
  const notify = () => { for (const fn of changed) fn() }
  const hub: LocalEventHub = {
    get listeners () { return count },
    publish (events) {
      for (const e of events) {
        const ls = byKind.get(e.kind)
        if (!ls || ls.size === 0) continue
        for (const l of ls) {
          // A failing listener (one stream) must not stop the others or the producer.
          try { l(e) } catch {}
        }
      }
    },
    subscribe (listener, kinds) {
      const wanted = [...new Set(kinds ?? EVENT_KINDS)]
      let grew = false
      for (const k of wanted) {
        const ls = byKind.get(k)!
        if (ls.size === 0) grew = true
        ls.add(listener)
      }
      count++
      if (grew) notify()
      let done = false
      return () => {
        if (done) return
        done = true
        count--
        let shrank = false
        for (const k of wanted) {
          const ls = byKind.get(k)!
          ls.delete(listener)
          if (ls.size === 0) shrank = true
        }
        if (shrank) notify()
      }
    },
    wants (kind) { return byKind.get(kind)!.size > 0 },
    wantsLocally (kind) { return byKind.get(kind)!.size > 0 },
    onWantsChanged (fn) { changed.push(fn) }
  }
  return hub
}
