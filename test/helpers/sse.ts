// A Server-Sent Events client over a real socket (fastify.inject cannot
// stream): GET /v1/events on a broker's HTTP port, frames parsed as they
// arrive. The socket can be paused (a client that stops reading).
import http from 'node:http'
import { TEST_ADMIN_TOKEN } from './broker.js'
import { waitFor } from './wait.js'

export interface SseFrame { id?: string, event?: string, data?: string, comment?: string }
export interface ParsedEvent { id?: string, kind: string, type: string, at: string, deviceId?: string, data: any } // eslint-disable-line @typescript-eslint/no-explicit-any

export interface SseClient {
  status: number
  headers: http.IncomingHttpHeaders
  /** Every frame so far, comments included. */
  frames: SseFrame[]
  /** The `data` of event frames other than `dropped`, parsed. */
  events (): ParsedEvent[]
  /** Counts of `dropped` frames. */
  dropped (): number[]
  /** Body of a non-200 answer. */
  body: string
  ended: boolean
  pause (): void
  resume (): void
  close (): void
  waitFor<T> (check: (c: SseClient) => T, what: string, timeoutMs?: number): Promise<NonNullable<T>>
}

export async function openEvents (port: number, query = '', opts: { token?: string, headers?: Record<string, string> } = {}): Promise<SseClient> {
  return await new Promise((resolve, reject) => {
    const req = http.get({
      host: '127.0.0.1',
      port,
      path: `/v1/events${query ? '?' + query : ''}`,
      headers: { authorization: `Bearer ${opts.token ?? TEST_ADMIN_TOKEN}`, accept: 'text/event-stream', ...opts.headers }
    }, (res) => {
      let buffer = ''
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        frames: [],
        body: '',
        ended: false,
        events: () => client.frames.filter((f) => f.event !== undefined && f.event !== 'dropped' && f.data !== undefined).map((f) => JSON.parse(f.data!) as ParsedEvent),
        dropped: () => client.frames.filter((f) => f.event === 'dropped').map((f) => (JSON.parse(f.data!) as { count: number }).count),
        pause: () => res.pause(),
        resume: () => res.resume(),
        close: () => { req.destroy() },
        waitFor: (check, what, timeoutMs = 10_000) => waitFor(() => check(client), { what, timeoutMs })
      }
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        if (client.status !== 200) { client.body += chunk; return }
        buffer += chunk
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const frame: SseFrame = {}
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) frame.comment = line.slice(1).trim()
            else {
              const i = line.indexOf(':')
              const field = line.slice(0, i)
              const value = line.slice(i + 1).replace(/^ /, '')
              if (field === 'id' || field === 'event') frame[field] = value
              else if (field === 'data') frame.data = frame.data === undefined ? value : frame.data + '\n' + value
            }
          }
          client.frames.push(frame)
        }
      })
      res.on('end', () => { client.ended = true })
      res.on('close', () => { client.ended = true })
      res.on('error', () => { client.ended = true })
      resolve(client)
    })
    req.on('error', reject)
  })
}
