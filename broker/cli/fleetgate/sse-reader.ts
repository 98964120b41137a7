// Server-Sent Events (text/event-stream) read from a fetch body, following
// the WHATWG parsing rules: lines end in LF, CRLF or CR; `field: value` with
// one optional space; `data` lines join with LF; an empty line dispatches;
// `:` starts a comment (the broker's heartbeat `: ping`). Used by
// `telemetry tail`, `events` and `rollouts watch` (GET /v1/events).

export interface SseEvent {
  /** The `id` of this event, or undefined when it had none (live-only kinds). */
  id: string | undefined
  /** `event:` field, `message` when absent. */
  event: string
  data: string
}

/** The events of a stream, until it ends or the reader's signal aborts it. */
export async function * readSse (body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder()
  let buffer = ''
  let id: string | undefined
  let event = ''
  let data: string[] = []
  let sawField = false
  // A CR at the end of a chunk may be the first half of CRLF.
  let pendingCr = false

  function * lines (text: string): Generator<string> {
    let start = 0
    for (let i = 0; i < text.length; i++) {
      const c = text[i]
      if (c === '\n' || c === '\r') {
        yield text.slice(start, i)
        if (c === '\r' && text[i + 1] === '\n') i++
        start = i + 1
      }
    }
    buffer = text.slice(start)
  }

  function field (line: string): SseEvent | undefined {
    if (line === '') {
      // Per the spec an event without data is not dispatched.
      const out = sawField && data.length > 0 ? { id, event: event || 'message', data: data.join('\n') } : undefined
      event = ''; data = []; sawField = false; id = undefined
      return out
    }
    if (line.startsWith(':')) return undefined
    const colon = line.indexOf(':')
    const name = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    sawField = true
    if (name === 'data') data.push(value)
    else if (name === 'event') event = value
    else if (name === 'id' && !value.includes('\0')) id = value
    return undefined
  }

  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    let text = buffer + decoder.decode(chunk, { stream: true })
    if (pendingCr && text.startsWith('\n')) text = text.slice(1)
    pendingCr = text.endsWith('\r')
    for (const line of lines(text)) {
      const e = field(line)
      if (e) yield e
    }
  }
}
