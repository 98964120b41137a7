// jsonDeeperThan (devices/json-depth.ts): the depth bound applied to every
// telemetry payload and request body before it is parsed or kept.
import test from 'ava'
import { jsonDeeperThan } from '../../devices/json-depth.js'

const nested = (levels: number) => '['.repeat(levels) + ']'.repeat(levels)

test('deeper than the bound is found; at the bound is not', (t) => {
  t.true(jsonDeeperThan(nested(33), 32))
  t.false(jsonDeeperThan(nested(32), 32))
  t.true(jsonDeeperThan('{"a":' + nested(40) + ',"pad":"' + 'x'.repeat(100) + '"}', 32))
})

test('many brackets side by side, or inside strings, are not depth', (t) => {
  // More opening brackets than the bound (the quick count says "maybe"),
  // but only two levels deep: the full scan decides.
  const siblings = '[' + Array.from({ length: 50 }, (_, i) => `{"i":${i}}`).join(',') + ']'
  t.false(jsonDeeperThan(siblings, 32))
  const inString = JSON.stringify({ text: '['.repeat(100) + '{'.repeat(100) })
  t.false(jsonDeeperThan(inString, 32))
  // An escaped quote does not end the string.
  t.false(jsonDeeperThan(JSON.stringify({ text: '\\"' + '['.repeat(100) }), 32))
})

test('a typical reading: three levels deep, decided either way', (t) => {
  const reading = JSON.stringify({ ts: 1_795_000_000_000, temp: 21.5, env: { hum: 40, tags: ['a', 'b'] }, note: 'x'.repeat(120) })
  t.false(jsonDeeperThan(reading, 3)) // three opening brackets: the quick count answers
  t.true(jsonDeeperThan(reading, 2)) // more than two: the full scan finds depth 3
})
