// The one request-body parser of the HTTP server: JSON in UTF-8, nothing else.
//
// fastify's defaults let through what an operator would not expect:
// `text/plain` bodies (parsed as a string, then refused as "body must be
// object"), `application/json; charset=utf-16` read as UTF-8 anyway, invalid
// UTF-8 silently replaced with U+FFFD, bodies nested thousands of levels deep
// (JSON.parse copes, but JSON.stringify recurses and overflows the stack when
// the value is stored or echoed: a 500), duplicate member names (the last one
// silently wins) and numbers JavaScript cannot hold (9007199254740993 becomes
// …992, 1e400 becomes Infinity and is stored as null). Each of these is a
// clear 4xx here, before the body reaches a route:
//
// - 415 unsupported_media_type unless the media type is application/json
//   (no charset parameter, or charset=utf-8, case-insensitive). Structured
//   `+json` types (application/merge-patch+json…) are refused too: they name
//   semantics no route implements.
// - 400 invalid_request for an empty body, bytes that are not UTF-8, nesting
//   deeper than MAX_JSON_DEPTH, a repeated member name in one object, a
//   `__proto__` member, a number that is not exactly an IEEE 754 double (send
//   it as a string), and of course for text JSON.parse refuses.
//
// The checks are one linear scan of the text before JSON.parse, so a deep or
// hostile body is refused before anything is allocated for it; the parse
// itself is still fastify's (secure-json-parse), so nothing here weakens its
// prototype-poisoning checks. Body size limits stay fastify's (bodyLimit,
// per route where a route raises it).
import { isUtf8 } from 'node:buffer'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ApiError } from './api-error.js'

/** Deepest nesting of objects and arrays a request body may have (the body itself is level 1). */
export const MAX_JSON_DEPTH = 64

const invalid = (detail: string) => new ApiError(400, 'invalid_request', detail)

/**
 * Whether a Content-Type header names JSON in UTF-8. Only the charset
 * parameter means anything for application/json (RFC 8259 defines none; a
 * charset other than UTF-8 would mean the bytes are not what we decode).
 */
export function isJsonUtf8 (header: string | undefined): boolean {
  if (header === undefined) return false
  const [type, ...params] = header.split(';')
  if (type!.trim().toLowerCase() !== 'application/json') return false
  let charsets = 0
  for (const p of params) {
    if (p.trim() === '') continue
    const eq = p.indexOf('=')
    if (eq < 0) return false
    if (p.slice(0, eq).trim().toLowerCase() !== 'charset') continue
    let value = p.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    // Twice (even twice the same) is a request nobody meant to send.
    if (++charsets > 1 || value.toLowerCase() !== 'utf-8') return false
  }
  return true
}

/** Index of the quote that closes the string opening at `start`, or -1. */
function stringEnd (text: string, start: number): number {
  let i = start
  for (;;) {
    i = text.indexOf('"', i + 1)
    if (i < 0) return -1
    let backslashes = 0
    for (let j = i - 1; text.charCodeAt(j) === 0x5c; j--) backslashes++
    if (backslashes % 2 === 0) return i
  }
}

const NUMBER = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/

/** A decimal literal as `[-]digits e exponent` with no leading or trailing zeros ("0" for zero). */
function decimalKey (literal: string): string | undefined {
  const m = NUMBER.exec(literal)
  if (!m) return undefined
  const fraction = m[3] ?? ''
  const digits = m[2]! + fraction
  // Loops, not /0+$/: that regex is quadratic on a long run of zeros.
  let first = 0
  while (first < digits.length && digits.charCodeAt(first) === 0x30) first++
  if (first === digits.length) return '0'
  let last = digits.length
  while (digits.charCodeAt(last - 1) === 0x30) last--
  const exponent = (m[4] === undefined ? 0 : Number(m[4])) - fraction.length + (digits.length - last)
  return `${m[1]}${digits.slice(first, last)}e${exponent}`
}

/**
 * Whether JSON.parse gives exactly the number the literal says: true for
 * 0.1 or 1.50 (the double prints back as the same decimal), false for
 * 9007199254740993, 1e400 (Infinity) or 1e-400 (0).
 */
export function isExactNumber (literal: string): boolean {
  // Fast path for nearly every number: at most 15 digits and no exponent
  // always survive a double (DBL_DIG is 15).
  if (literal.length <= 15 && !/[eE]/.test(literal)) return true
  const value = Number(literal)
  if (!Number.isFinite(value)) return Number.isNaN(value) // not a number at all: JSON.parse's to refuse
  const printed = String(value)
  // Written the way JavaScript (and most serialisers) print doubles.
  if (printed === literal) return true
  const key = decimalKey(literal)
  return key === undefined || key === decimalKey(printed)
}

/**
 * Why a JSON text must be refused (depth, duplicate or forbidden member
 * names, inexact numbers), or undefined. Syntax is JSON.parse's business:
 * on malformed text this may miss things, but it never throws and it is
 * linear in the length of the text.
 */
export function checkJsonText (text: string, maxDepth = MAX_JSON_DEPTH): string | undefined {
  // One entry per open container: the member names seen so far for an
  // object, null for an array.
  const open: Array<Set<string> | null> = []
  let expectKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) { // "
      const end = stringEnd(text, i)
      if (end < 0) return undefined
      const names = open.at(-1)
      if (expectKey && names) {
        const raw = text.slice(i + 1, end)
        let name = raw
        if (raw.includes('\\')) {
          try { name = JSON.parse(text.slice(i, end + 1)) as string } catch { return undefined }
        }
        if (name === '__proto__') return 'member name "__proto__" is not allowed'
        if (names.has(name)) return `member name ${JSON.stringify(name.slice(0, 100))} appears twice in one object`
        names.add(name)
        expectKey = false
      }
      i = end
    } else if (c === 0x7b || c === 0x5b) { // { [
      if (open.length >= maxDepth) return `body is nested deeper than ${maxDepth} levels`
      open.push(c === 0x7b ? new Set() : null)
      expectKey = c === 0x7b
    } else if (c === 0x7d || c === 0x5d) { // } ]
      if (open.pop() === undefined) return undefined
      expectKey = false
    } else if (c === 0x2c) { // ,
      expectKey = open.at(-1) != null
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) { // - 0-9
      let end = i + 1
      for (; end < text.length; end++) {
        const d = text.charCodeAt(end)
        if (!((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d)) break
      }
      const literal = text.slice(i, end)
      if (!isExactNumber(literal)) {
        const shown = literal.length > 40 ? `${literal.slice(0, 37)}...` : literal
        return `number ${shown} cannot be represented exactly (IEEE 754 double); send it as a string`
      }
      i = end - 1
    }
  }
  return undefined
}

/**
 * Replaces fastify's body parsers (application/json and text/plain) with
 * the one JSON parser above; any other media type is 415.
 */
export function installJsonBody (app: FastifyInstance, maxDepth = MAX_JSON_DEPTH): void {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req: FastifyRequest, bytes: Buffer, done) => {
    if (!isJsonUtf8(req.headers['content-type'])) {
      return done(new ApiError(415, 'unsupported_media_type', 'request bodies are JSON in UTF-8: Content-Type application/json, with no charset or charset=utf-8'), undefined)
    }
    if (bytes.length === 0) return done(invalid('the body is empty but Content-Type is application/json'), undefined)
    // toString() would silently turn bad bytes into U+FFFD.
    if (!isUtf8(bytes)) return done(invalid('the body is not valid UTF-8'), undefined)
    const text = bytes.toString('utf8')
    const refusal = checkJsonText(text, maxDepth)
    if (refusal !== undefined) return done(invalid(refusal), undefined)
    parse(req, text, done)
  })
}
