// A small TTL cache of device credentials (the stored hash, not the secret),
// so a reconnect storm does not become one database query per CONNECT.
// Concurrent look-ups of one id share a single query. Entries are dropped at
// once when a device is disabled or its secret rotated (invalidate()).
// Unknown ids are remembered for a shorter time (negativeTtlMs), so a flood
// of CONNECTs with made-up ids does not become a flood of queries.
import type { DeviceCredentials } from './device-store.js'

export interface CredentialCache {
  get (id: string): Promise<DeviceCredentials | undefined>
  invalidate (id: string): void
  clear (): void
  readonly size: number
}

export interface CredentialCacheOptions {
  ttlMs: number
  /** How long "no such device" is remembered; default min(ttlMs, 5 s). */
  negativeTtlMs?: number
  max: number
  load (id: string): Promise<DeviceCredentials | undefined>
  onHit?: () => void
  onMiss?: () => void
  now?: () => number
}

export function createCredentialCache (opts: CredentialCacheOptions): CredentialCache {
  const now = opts.now ?? Date.now
  const negativeTtlMs = opts.negativeTtlMs ?? Math.min(opts.ttlMs, 5000)
  const entries = new Map<string, { value: DeviceCredentials | undefined, expires: number }>()
  const inflight = new Map<string, Promise<DeviceCredentials | undefined>>()
  // Bumped by invalidate(): a load that started before an invalidation must
  // not put the stale value back into the cache.
  const generation = new Map<string, number>()

  return {
    get size () { return entries.size },
    async get (id) {
      const hit = entries.get(id)
      if (hit && hit.expires > now()) {
        opts.onHit?.()
        return hit.value
      }
      if (hit) entries.delete(id)
      opts.onMiss?.()
      let pending = inflight.get(id)
      if (!pending) {
        const gen = generation.get(id) ?? 0
        pending = opts.load(id).then((value) => {
          const ttl = value ? opts.ttlMs : negativeTtlMs
          if (ttl > 0 && opts.max > 0 && (generation.get(id) ?? 0) === gen) {
            if (entries.size >= opts.max) entries.delete(entries.keys().next().value as string)
            entries.set(id, { value, expires: now() + ttl })
          }
          return value
        }).finally(() => inflight.delete(id))
        inflight.set(id, pending)
      }
      return await pending
    },
    invalidate (id) {
      entries.delete(id)
      inflight.delete(id)
      generation.set(id, (generation.get(id) ?? 0) + 1)
      if (generation.size > 100_000) generation.clear()
    },
    clear () { entries.clear(); inflight.clear(); generation.clear() }
  }
}
