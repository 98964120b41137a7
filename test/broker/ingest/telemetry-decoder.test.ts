import test from 'ava'
import { decodeTelemetry, splitJsonArray } from '../../../broker/ingest/telemetry-decoder.js'

const limits = { maxBytes: 1 << 20, maxReadings: 1000, maxDepth: 32 }
const decode = (s: string | Buffer) => decodeTelemetry(Buffer.isBuffer(s) ? s : Buffer.from(s), 1_700_000_000_000, limits)

test('array elements keep their source text, so numbers JavaScript cannot hold survive exactly', (t) => {
  const r = decode('[{"ts":1,"c":9007199254740993}, {"ts":1,"c":9007199254740992} ,{"ts":1,"big":1e400}]')
  if (!r.ok) return t.fail(r.detail)
  t.deepEqual(r.readings.map((x) => x.json), ['{"ts":1,"c":9007199254740993}', '{"ts":1,"c":9007199254740992}', '{"ts":1,"big":1e400}'])
  t.not(r.readings[0]!.hash, r.readings[1]!.hash, 'different readings, different identities')
})

test('splitJsonArray handles strings holding brackets, commas, quotes and escapes', (t) => {
  const elements = [
    { s: 'a,b]c}d[e{f' }, { s: 'quote " and backslash \\ and \\"' }, { n: [1, [2, { x: ']' }]] }, { e: '' }, { u: '\u00e9\u{1F600}' }
  ]
  const text = '[ ' + elements.map((e) => JSON.stringify(e)).join(' ,\n ') + ' ]'
  t.deepEqual(splitJsonArray(text).map((x) => JSON.parse(x)), elements)
})

test('splitJsonArray agrees with JSON.parse on generated arrays', (t) => {
  let seed = 42
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff }
  const chars = ['a', ',', '[', ']', '{', '}', '"', '\\', ' ', ':', 'é']
  const value = (depth: number): unknown => {
    const k = rnd()
    if (depth > 3 || k < 0.3) return Array.from({ length: Math.floor(rnd() * 6) }, () => chars[Math.floor(rnd() * chars.length)]).join('')
    if (k < 0.45) return Math.round(rnd() * 1e6) / 100
    if (k < 0.7) return Array.from({ length: Math.floor(rnd() * 3) }, () => value(depth + 1))
    return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 3) }, (_, i) => ['k' + i, value(depth + 1)]))
  }
  for (let n = 0; n < 300; n++) {
    const arr = Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => ({ v: value(0) }))
    const text = JSON.stringify(arr, null, rnd() < 0.5 ? 0 : 1)
    t.deepEqual(splitJsonArray(text).map((x) => JSON.parse(x)), arr)
  }
})

test('a payload nested deeper than the bound is dead-lettered too_deep; one at the bound is accepted', (t) => {
  for (const depth of [5_000, 100_000]) {
    const deep = '[{"a":' + '['.repeat(depth) + ']'.repeat(depth) + '}]'
    const r = decodeTelemetry(Buffer.from(deep), 0, { maxBytes: 1 << 20, maxReadings: 10, maxDepth: 32 })
    t.false(r.ok)
    if (!r.ok) t.is(r.reason, 'too_deep')
  }
  // An object nested 31 deep inside the reading: 32 levels in all.
  const atBound = '{"a":' + '{"b":'.repeat(31) + '1' + '}'.repeat(31) + '}'
  t.true(decode(atBound).ok)
  t.false(decode('[' + atBound + ']').ok, 'the message array is a level too')
  // Brackets inside strings are not nesting.
  t.true(decode(JSON.stringify({ s: '['.repeat(1000) })).ok)
})

test('a ts on a day that does not exist is invalid_ts, not rolled over to the next month', (t) => {
  for (const ts of ['2026-09-31T12:00:00Z', '2026-02-30T00:00:00Z', '2026-02-29T00:00:00Z', '2026-04-31T00:00:00+02:00', '2026-01-00T00:00:00Z', '2026-13-01T00:00:00Z', '2026-01-01T24:00:00Z', '2026-01-01T12:60:00Z', '2026-01-01T12:00:61Z']) {
    const r = decodeTelemetry(Buffer.from(JSON.stringify({ ts, v: 1 })), 0, limits)
    t.false(r.ok, ts)
    if (!r.ok) t.is(r.reason, 'invalid_ts', ts)
  }
  for (const ts of ['2024-02-29T00:00:00Z', '2026-01-31T23:59:59.999Z', '2026-12-31T00:00:00+14:00']) {
    t.true(decodeTelemetry(Buffer.from(JSON.stringify({ ts, v: 1 })), 0, limits).ok, ts)
  }
})

test('only a decoded U+0000 is unsupported_value; an escaped backslash followed by u0000 is valid text', (t) => {
  const ok = decode('{"path":"C:\\\\u0000dir"}')
  t.true(ok.ok)
  if (ok.ok) t.is(ok.readings[0]!.json, '{"path":"C:\\\\u0000dir"}', 'stored as sent')
  for (const bad of ['{"v":"a\\u0000b"}', '{"a\\u0000":1}', '[{"v":1},{"n":{"deep":["\\u0000"]}}]']) {
    const r = decode(bad)
    t.false(r.ok, bad)
    if (!r.ok) t.is(r.reason, 'unsupported_value', bad)
  }
})

test('\\u0000 is refused before it reaches PostgreSQL', (t) => {
  const r = decode('{"v":"a\\u0000b"}')
  t.false(r.ok)
  if (!r.ok) t.is(r.reason, 'unsupported_value')
})

test('ts: ISO 8601 with zone or epoch ms; anything else is invalid_ts', (t) => {
  for (const ok of ['"2026-01-01T00:00:00Z"', '"2026-01-01T00:00:00.123+02:00"', '"2026-01-01 00:00:00+0000"', '0', '1767225600000']) {
    t.true(decode(`{"ts":${ok}}`).ok, ok)
  }
  for (const bad of ['"2026-01-01"', '"2026-01-01T00:00:00"', '"tomorrow"', '-1', '1e20', 'true', 'null', '"2026-13-45T99:99:99Z"']) {
    const r = decode(`{"ts":${bad}}`)
    t.false(r.ok, bad)
    if (!r.ok) t.is(r.reason, 'invalid_ts', bad)
  }
})

test('readings with ts have a content identity; without ts a unique one', (t) => {
  const a = decode('{"ts":5,"v":1}'); const b = decode('{"ts":5,"v":1}')
  const c = decode('{"v":1}'); const d = decode('{"v":1}')
  if (!a.ok || !b.ok || !c.ok || !d.ok) return t.fail()
  t.is(a.readings[0]!.hash, b.readings[0]!.hash)
  t.not(c.readings[0]!.hash, d.readings[0]!.hash)
  t.regex(a.readings[0]!.hash, /^[0-9a-f]{16}$/)
  t.regex(c.readings[0]!.hash, /^[0-9a-f]{16}$/)
})
