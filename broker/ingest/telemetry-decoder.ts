// Validates a telemetry payload before anything else happens to it (issue 2):
// size, JSON, shape (an object or a non-empty array of objects), the length of
// the array and each reading's optional `ts`. Each reading becomes one row.
import { isUtf8 } from 'node:buffer'
import { hash } from 'node:crypto'
import { jsonDeeperThan } from '../../devices/json-depth.js'

export interface Reading {
  /** The reading's own time in epoch ms (its `ts`), or the receive time. */
  ts: number
  /** True when `ts` came from the device (deduplicated), false when stamped on receipt (at-least-once). */
  hasTs: boolean
  /** 64 bits of a digest of the reading's JSON as 16 hex digits (the bigint column is built from it in SQL). */
  hash: string
  /** The reading as JSON text, stored as jsonb. */
  json: string
}

export type RejectReason = 'payload_too_large' | 'invalid_json' | 'invalid_shape' | 'too_deep' | 'too_many_readings' | 'invalid_ts' | 'ts_out_of_window' | 'unsupported_value'

export type DecodeResult =
  | { ok: true, readings: Reading[] }
  | { ok: false, reason: RejectReason, detail: string }

export interface DecoderLimits {
  maxBytes: number
  maxReadings: number
  /** Deepest nesting of arrays/objects in a payload (the message's own array counts as a level). */
  maxDepth: number
  /** Accepted window for `ts` in epoch ms (issue 5): older than retention or too far ahead is dead-lettered. */
  minTs?: number
  maxTs?: number
}

// ISO 8601 date-time with a zone (Z or ±hh:mm); Date.parse alone accepts
// many non-ISO formats and local times, which would make `ts` ambiguous.
// Hours, minutes and seconds are range-checked here; the day of the month
// is checked against the calendar below.
const ISO_8601 = /^(\d{4})-(0[1-9]|1[0-2])-(\d{2})[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)$/i
// Readings must fall between 1970 and 9999 (also keeps PostgreSQL's timestamptz range safe).
const MAX_EPOCH_MS = 253_402_300_799_999

function parseTs (value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 && value <= MAX_EPOCH_MS ? Math.floor(value) : undefined
  }
  const m = typeof value === 'string' ? ISO_8601.exec(value) : null
  if (m) {
    // Date.parse rolls impossible days over (2026-02-30 becomes 2026-03-02):
    // the day must exist in that month of that year (issue 11).
    const day = Number(m[3])
    if (day < 1 || day > daysInMonth(Number(m[1]), Number(m[2]))) return undefined
    const ms = Date.parse(value as string)
    return Number.isFinite(ms) && ms >= 0 && ms <= MAX_EPOCH_MS ? ms : undefined
  }
  return undefined
}

function daysInMonth (year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate()
}

/** True when a string anywhere in the value (keys included) holds U+0000. */
function containsNul (v: unknown): boolean {
  if (typeof v === 'string') return v.includes('\u0000')
  if (typeof v !== 'object' || v === null) return false
  if (Array.isArray(v)) return v.some(containsNul)
  for (const k in v) if (k.includes('\u0000') || containsNul((v as Record<string, unknown>)[k])) return true
  return false
}

// SHA-1 through the one-shot crypto.hash(): about half the cost of a
// createHash() object per reading. Only 64 bits are kept: this identifies a
// reading among one device's readings at one ts, it is not a security boundary
// (a device can only collide with its own data).
export function readingHash (json: string): string {
  return hash('sha1', json, 'hex').slice(0, 16)
}

/**
 * The source text of each element of a JSON array that JSON.parse accepted.
 * Readings are stored as the device sent them: re-serialising a parsed value
 * would change numbers JavaScript cannot hold exactly (integers past 2^53,
 * 1e400) and could make two different readings look identical.
 */
export function splitJsonArray (text: string): string[] {
  const out: string[] = []
  let depth = 0
  let inString = false
  let start = -1
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
      continue
    }
    if (c === 0x22) { inString = true; if (depth === 1 && start < 0) start = i; continue }
    if (c === 0x5b || c === 0x7b) { // [ {
      if (depth === 1 && start < 0) start = i
      depth++
      continue
    }
    if (c === 0x5d || c === 0x7d) { // ] }
      depth--
      if (depth === 0 && start >= 0) out.push(text.slice(start, i).trimEnd())
      continue
    }
    if (depth === 1) {
      if (c === 0x2c) { out.push(text.slice(start, i).trimEnd()); start = -1 } else if (start < 0 && c > 0x20) start = i
    }
  }
  return out
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

// Readings without `ts` are stamped with the receive time and are
// at-least-once: each gets a unique identity instead of a content hash, so two
// equal readings in one message (same receive ms) are both kept, and a
// retransmission after a lost PUBACK is stored again (documented in README).
// 'f' + 15 hex digits: a random 28-bit process prefix and a 32-bit counter
// (content hashes use all 16 hex digits, so the spaces rarely meet, and a
// meeting would need the same device and the same receive millisecond).
const processPrefix = Math.floor(Math.random() * 0x10000000).toString(16).padStart(7, '0')
let uniqueSeq = 0
function uniqueIdentity (): string {
  uniqueSeq = (uniqueSeq + 1) >>> 0
  return 'f' + processPrefix + uniqueSeq.toString(16).padStart(8, '0')
}

type Refusal = { reason: RejectReason, detail: string }

function toReading (obj: Record<string, unknown>, json: string, receivedAt: number, index: number, limits: DecoderLimits): Reading | Refusal {
  if (obj.ts === undefined) return { ts: receivedAt, hasTs: false, hash: uniqueIdentity(), json }
  const ts = parseTs(obj.ts)
  if (ts === undefined) return { reason: 'invalid_ts', detail: `reading ${index}: ts must be ISO 8601 with a time zone or epoch milliseconds between 1970 and 9999` }
  if ((limits.minTs !== undefined && ts < limits.minTs) || (limits.maxTs !== undefined && ts > limits.maxTs)) {
    return { reason: 'ts_out_of_window', detail: `reading ${index}: ts ${new Date(ts).toISOString()} is outside the accepted window ${new Date(limits.minTs ?? 0).toISOString()} – ${new Date(limits.maxTs ?? MAX_EPOCH_MS).toISOString()}` }
  }
  return { ts, hasTs: true, hash: readingHash(json), json }
}

export function decodeTelemetry (payload: Buffer, receivedAt: number, limits: DecoderLimits): DecodeResult {
  try {
    return decode(payload, receivedAt, limits)
  } catch (err) {
    // Nothing a device sends may throw out of the publish hook (that would
    // crash the process): whatever fails here is a dead letter.
    return { ok: false, reason: 'invalid_json', detail: (err as Error).message.slice(0, 200) }
  }
}

function decode (payload: Buffer, receivedAt: number, limits: DecoderLimits): DecodeResult {
  if (payload.length > limits.maxBytes) {
    return { ok: false, reason: 'payload_too_large', detail: `${payload.length} bytes, limit ${limits.maxBytes}` }
  }
  // JSON is UTF-8 (RFC 8259); toString() would silently replace bad bytes.
  if (!isUtf8(payload)) return { ok: false, reason: 'invalid_json', detail: 'payload is not valid UTF-8' }
  const text = payload.toString('utf8')
  // Checked before parsing: what is that deep could not be stored or read
  // back (see devices/json-depth.ts).
  if (jsonDeeperThan(text, limits.maxDepth)) {
    return { ok: false, reason: 'too_deep', detail: `nesting deeper than ${limits.maxDepth} levels` }
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return { ok: false, reason: 'invalid_json', detail: (err as Error).message.slice(0, 200) }
  }
  // PostgreSQL's jsonb cannot hold U+0000: refuse it here rather than make a
  // whole batch fail and be split to find it. The text test is only a quick
  // filter; the decoded strings decide ("C:\\u0000dir" is an escaped
  // backslash followed by "u0000", valid and storable).
  if (text.includes('\\u0000') && containsNul(value)) {
    return { ok: false, reason: 'unsupported_value', detail: 'strings containing \\u0000 cannot be stored' }
  }
  if (isPlainObject(value)) {
    // The payload text itself is the reading: no re-serialisation on the hot path.
    const r = toReading(value, text, receivedAt, 0, limits)
    return 'reason' in r ? { ok: false, ...r } : { ok: true, readings: [r] }
  }
  if (!Array.isArray(value)) {
    return { ok: false, reason: 'invalid_shape', detail: 'payload must be a JSON object or an array of objects' }
  }
  if (value.length === 0) return { ok: false, reason: 'invalid_shape', detail: 'empty array' }
  if (value.length > limits.maxReadings) {
    return { ok: false, reason: 'too_many_readings', detail: `${value.length} readings, limit ${limits.maxReadings}` }
  }
  for (let i = 0; i < value.length; i++) {
    if (!isPlainObject(value[i])) return { ok: false, reason: 'invalid_shape', detail: `element ${i} is not an object` }
  }
  const texts = splitJsonArray(text)
  if (texts.length !== value.length) throw new Error(`array split found ${texts.length} elements, expected ${value.length}`)
  const readings: Reading[] = new Array(value.length)
  for (let i = 0; i < value.length; i++) {
    const r = toReading(value[i] as Record<string, unknown>, texts[i]!, receivedAt, i, limits)
    if ('reason' in r) return { ok: false, ...r }
    readings[i] = r
  }
  return { ok: true, readings }
}
