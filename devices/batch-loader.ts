// Coalesces look-ups made in the same turn of the event loop into one query
// (the DataLoader pattern): a reconnect storm of thousands of devices becomes
// a few `WHERE id = ANY($1)` queries instead of one round trip per device.
export type BatchLoad<K, V> = (keys: K[]) => Promise<Map<K, V>>

export function createBatchLoader<K, V> (loadMany: BatchLoad<K, V>, maxBatch = 1000): (key: K) => Promise<V | undefined> {
  let pending = new Map<K, Array<{ resolve (v: V | undefined): void, reject (e: unknown): void }>>()
  let scheduled = false

  function flush () {
    scheduled = false
    const batch = pending
    pending = new Map()
    const keys = [...batch.keys()]
    for (let i = 0; i < keys.length; i += maxBatch) {
      const part = keys.slice(i, i + maxBatch)
      loadMany(part).then((found) => {
        for (const k of part) for (const w of batch.get(k)!) w.resolve(found.get(k))
      }, (err: unknown) => {
        for (const k of part) for (const w of batch.get(k)!) w.reject(err)
      })
    }
  }

  return (key) => new Promise<V | undefined>((resolve, reject) => {
    const waiters = pending.get(key)
    if (waiters) waiters.push({ resolve, reject }); else pending.set(key, [{ resolve, reject }])
    if (!scheduled) { scheduled = true; setImmediate(flush) }
  })
}
