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

export interface FleetEvent {
  /** fleet_events.id as a decimal string; absent for live-only kinds. */
  id?: string
  kind: EventKind
  type: string
  /** ISO 8601. */
  at: string
  deviceId?: string
  data: Record<string, unknown>
}

/** An event before it is stored: `at` defaults to now. */
export type NewEvent = Omit<FleetEvent, 'id' | 'at'> & { at?: string }

export interface EventHub {
  /** Hands committed events to every stream of every replica. Never throws, never waits. */
  publish (events: FleetEvent[]): void
  /** Every event this replica receives (its own and other replicas'); returns the unsubscribe. */
  subscribe (listener: (event: FleetEvent) => void): () => void
  /**
   * Whether any stream (on any replica) currently wants this kind. Producers
   * of high-volume live kinds (telemetry) build no events when nobody listens.
   */
  wants (kind: EventKind): boolean
}

/** The hub of one process: subscribers of this process only. */
export function createLocalEventHub (): EventHub & { readonly listeners: number } {
  const listeners = new Set<(event: FleetEvent) => void>()
  return {
    get listeners () { return listeners.size },
    publish (events) {
      for (const e of events) {
        for (const l of listeners) l(e)
      }
    },
    subscribe (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },
    wants () { return listeners.size > 0 }
  }
}
