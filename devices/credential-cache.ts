// A TTL cache of device credentials (the stored hash, not the secret), so a
// reconnect storm does not become one database query per CONNECT. Built on
// lru-cache: least-recently-used eviction (a storm larger than the cache
// keeps the devices that are reconnecting, instead of churning
// oldest-inserted entries), per-entry TTL, and fetch() de-duplication
// (concurrent look-ups of one id share one query). Entries are dropped at
// once when a device is disabled, deleted or its secret rotated
// (invalidate()); a load that started before an invalidation does not put
// the stale value back (lru-cache aborts it). Unknown ids are remembered for
// a shorter time (negativeTtlMs), so a flood of CONNECTs with made-up ids does
// not become a flood of queries.
import { LRUCache } from 'lru-cache'
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
}

/** The loader's own failure (the database), told apart from lru-cache aborting a fetch. */
class LoadFailed extends Error {
  constructor (override readonly cause: unknown) { super('credential look-up failed') }
}

// lru-cache stores no undefined: "no such device" is kept as this marker.
const UNKNOWN = Symbol('unknown device')
type Entry = DeviceCredentials | typeof UNKNOWN

export function createCredentialCache (opts: CredentialCacheOptions): CredentialCache {
  const negativeTtlMs = opts.negativeTtlMs ?? Math.min(opts.ttlMs, 5000)
  // A cache of size or TTL 0 caches nothing: every look-up loads.
  if (opts.max <= 0 || opts.ttlMs <= 0) {
    return {
      get size () { return 0 },
      async get (id) { opts.onMiss?.(); return await opts.load(id) },
      invalidate () {},
      clear () {}
    }
  }
  const cache = new LRUCache<string, Entry>({
    max: opts.max,
    ttl: opts.ttlMs,
    ttlAutopurge: false,
    // An invalidation while a load is in flight aborts it: its value is not stored.
    ignoreFetchAbort: false,
    fetchMethod: async (id, _stale, { options }) => {
      let value
      try {
        value = await opts.load(id)
      } catch (err) {
        throw new LoadFailed(err)
      }
      if (value === undefined) {
        // fetchMethod may set the TTL of what it returns (lru-cache's FetchOptions).
        options.ttl = Math.max(negativeTtlMs, 1)
        return UNKNOWN
      }
      return value
    }
  })
  return {
    get size () { return cache.size },
    async get (id) {
      if (cache.has(id)) opts.onHit?.()
      else opts.onMiss?.()
      let v: Entry | undefined
      try {
        v = await cache.fetch(id)
      } catch (err) {
        if (err instanceof LoadFailed) throw err.cause
        // Anything else is lru-cache aborting the look-up: invalidate()
        // dropped the id while it was loading (the device changed meanwhile).
        // Read it again, uncached, rather than fail the CONNECT.
        v = await opts.load(id)
      }
      return v === UNKNOWN || v === undefined ? undefined : v
    },
    invalidate (id) { cache.delete(id) },
    clear () { cache.clear() }
  }
}
