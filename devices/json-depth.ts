// How deeply a JSON text nests, found by one pass over its characters
// (strings skipped), without parsing it (issue 11). JSON.parse copes with
// any depth, but what comes after does not: JSON.stringify, ajv, pg's
// parameter serialisation and PostgreSQL's jsonb functions recurse and fail
// with a stack overflow on values nested some thousands deep, so a reading
// or a request body like that must be refused before it is kept.

/** True when the JSON text nests arrays/objects deeper than `max` levels. */
export function jsonDeeperThan (text: string, max: number): boolean {
  // Fewer characters than brackets it would take: cannot be too deep.
  if (text.length <= max * 2) return false
  // Nor with no more opening brackets than that (those in strings counted
  // too: an upper bound). Found by indexOf, natively: a typical reading has
  // a handful, and this runs for every telemetry message (issue 15).
  let opens = 0
  for (let i = text.indexOf('{'); i !== -1 && opens <= max; i = text.indexOf('{', i + 1)) opens++
  for (let i = text.indexOf('['); i !== -1 && opens <= max; i = text.indexOf('[', i + 1)) opens++
  if (opens <= max) return false
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) { // [ {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) { // ] }
      depth--
    }
  }
  return false
}
