// The credential cache on its own (its loader is a stand-in: what is cached
// and when it is loaded is the behaviour under test; the real loader is
// covered by the authentication tests).
import test from 'ava'
import { createCredentialCache } from '../../devices/credential-cache.js'
import type { DeviceCredentials } from '../../devices/device-store.js'

const creds = (id: string): DeviceCredentials => ({ id, secretHash: `hash-${id}`, disabled: false } as unknown as DeviceCredentials)

function counting (known = (id: string) => !id.startsWith('ghost')) {
  const loads: string[] = []
  const cache = createCredentialCache({ ttlMs: 60_000, negativeTtlMs: 60_000, max: 3, load: async (id) => { loads.push(id); return known(id) ? creds(id) : undefined } })
  return { cache, loads }
}

test('concurrent look-ups of one id share one load; later ones are hits', async (t) => {
  const { cache, loads } = counting()
  const [a, b] = await Promise.all([cache.get('d1'), cache.get('d1')])
  t.is(a?.secretHash, 'hash-d1')
  t.is(b?.secretHash, 'hash-d1')
  await cache.get('d1')
  t.deepEqual(loads, ['d1'])
})

test('eviction is least-recently-used: devices that keep reconnecting stay cached', async (t) => {
  const { cache, loads } = counting()
  await cache.get('a'); await cache.get('b'); await cache.get('c')
  await cache.get('a') // a is used again: b is now the least recently used
  await cache.get('d') // evicts b, not a
  loads.length = 0
  await cache.get('a')
  t.deepEqual(loads, [], 'a still cached')
  await cache.get('b')
  t.deepEqual(loads, ['b'], 'b was evicted')
})

test('unknown ids are remembered too (a flood of made-up ids is not a flood of queries)', async (t) => {
  const { cache, loads } = counting()
  t.is(await cache.get('ghost-1'), undefined)
  t.is(await cache.get('ghost-1'), undefined)
  t.deepEqual(loads, ['ghost-1'])
})

test('invalidate() drops an entry at once, and a load in flight does not put the old value back', async (t) => {
  let version = 1
  let release = () => {}
  const loads: number[] = []
  const cache = createCredentialCache({
    ttlMs: 60_000,
    max: 10,
    load: async (id) => {
      const v = version
      loads.push(v)
      if (v === 1) await new Promise<void>((resolve) => { release = resolve })
      return { ...creds(id), secretHash: `v${v}` }
    }
  })
  const first = cache.get('r')
  await new Promise((resolve) => setImmediate(resolve))
  version = 2
  cache.invalidate('r') // the secret was rotated while the first look-up ran
  release()
  t.is((await first)?.secretHash, 'v2', 'the look-up in flight reads again rather than answer with the old secret')
  t.is((await cache.get('r'))?.secretHash, 'v2')
})

test('a cache of size 0 loads every time', async (t) => {
  const loads: string[] = []
  const cache = createCredentialCache({ ttlMs: 60_000, max: 0, load: async (id) => { loads.push(id); return creds(id) } })
  await cache.get('x'); await cache.get('x')
  t.deepEqual(loads, ['x', 'x'])
})
