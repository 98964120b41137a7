// Telemetry events of the live stream (issue 13): one `telemetry` event per
// committed reading, `{ts, reading}`, built only when some stream wants
// telemetry (the caller asks the hub first: no per-reading work otherwise).
//
// The reading is already JSON text (the device's own bytes, telemetry-
// decoder.ts), so each event's JSON is assembled around it as text, once,
// and handed to the hub with the event (fleet-events.ts EVENT_JSON): no parse
// and no re-serialisation per reading, whatever the number of streams. A
// listener in this process that reads `data.reading` parses it then.
import { EVENT_JSON, type FleetEvent } from '../../devices/fleet-events.js'
import type { IngestRow } from './telemetry-sink.js'

// JSON's own whitespace may contain line breaks (a pretty-printed payload);
// an SSE data line and a bus message line may not. Outside strings they are
// only whitespace, and inside strings JSON cannot have them raw.
const LINE_BREAK = /[\r\n]/
const LINE_BREAKS = /[\r\n]+/g

/**
 * Date.prototype.toISOString per reading was half the cost of an event:
 * the readings of a batch mostly share their minute, so its text is reused
 * and only seconds and milliseconds are written.
 */
function isoFormatter (): (ms: number) => string {
  let minute = NaN
  let prefix = ''
  return (ms) => {
    const m = Math.floor(ms / 60_000)
    if (m !== minute) {
      const iso = new Date(ms).toISOString()
      // Years outside 0000–9999 are written differently: not cached.
      if (iso.length !== 24) return iso
      minute = m
      prefix = iso.slice(0, 17)
    }
    const rest = ms - m * 60_000
    const s = Math.floor(rest / 1000)
    const milli = rest - s * 1000
    return prefix + (s < 10 ? '0' : '') + s + '.' + (milli < 10 ? '00' : milli < 100 ? '0' : '') + milli + 'Z'
  }
}

/** `{ts, reading}`, the reading parsed only if a listener in this process reads it. */
class TelemetryData {
  constructor (readonly ts: string, private readonly text: string) {}
  get reading (): unknown { return JSON.parse(this.text) }
  toJSON () { return { ts: this.ts, reading: this.reading } }
}

export function telemetryEvents (rows: readonly IngestRow[]): FleetEvent[] {
  const at = new Date().toISOString()
  const iso = isoFormatter()
  const head = '{"kind":"telemetry","type":"stored","at":"' + at + '","deviceId":'
  const out: FleetEvent[] = []
  for (const r of rows) {
    if (r.kind !== 'reading') continue
    const ts = iso(r.ts)
    const reading = LINE_BREAK.test(r.json) ? r.json.replace(LINE_BREAKS, ' ') : r.json
    const json = head + JSON.stringify(r.deviceId) + ',"data":{"ts":"' + ts + '","reading":' + reading + '}}'
    const e: FleetEvent = { kind: 'telemetry', type: 'stored', at, deviceId: r.deviceId, data: new TelemetryData(ts, reading) as unknown as Record<string, unknown> }
    e[EVENT_JSON] = json
    out.push(e)
  }
  return out
}
