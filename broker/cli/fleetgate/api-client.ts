// The only way the `fleetgate` command talks to a broker: its public REST API
// (and the event stream) over HTTP, with the operator token as a bearer
// token. It never imports the broker's or the domain's internals, so it works
// against any reachable replica exactly as a script with curl would.
//
// The token goes into the Authorization header and nowhere else: errors name
// the URL (without any user:password part), the status and the problem's
// code and detail, never a header.
import { CliError, EXIT, exitCodeOfStatus } from './exit-codes.js'

export type Query = Record<string, string | number | boolean | undefined>

export interface ApiResult<T> {
  status: number
  body: T
  /** The body as the API sent it (telemetry payloads keep every digit of their numbers in it). */
  text: string
  headers: Headers
}

export interface RequestOptions {
  query?: Query
  body?: unknown
  headers?: Record<string, string>
  /** Longer than the default for requests the server holds on purpose (waitSeconds). */
  timeoutMs?: number
  /** Not JSON (an NDJSON stream): only `text` is set. */
  raw?: boolean
}

export interface ApiClient {
  /** The base URL, safe to print. */
  readonly displayUrl: string
  request<T = unknown> (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, options?: RequestOptions): Promise<ApiResult<T>>
  /** Opens a text/event-stream response (GET); the caller reads and closes it (signal). */
  openStream (path: string, query: Query, options: { signal: AbortSignal, lastEventId?: string }): Promise<Response>
}

/** A problem+json answer (or another HTTP error) of the API, as `error <code>: <detail>`. */
export class ApiFailure extends CliError {
  constructor (readonly status: number, readonly code: string, readonly detail: string, hint?: string) {
    super(`error ${code}: ${detail}${hint ? ` (${hint})` : ''}`, exitCodeOfStatus(status))
    this.name = 'ApiFailure'
  }
}

/** The broker could not be reached or did not answer in time (a stream retries these). */
export class NetworkError extends CliError {
  constructor (message: string) {
    super(message, EXIT.failed)
    this.name = 'NetworkError'
  }
}

const DEFAULT_TIMEOUT_MS = 30_000

/** The URL without user:password, for messages. */
export function displayUrl (url: URL): string {
  const shown = new URL(url.href)
  shown.username = ''
  shown.password = ''
  return shown.href.replace(/\/$/, '')
}

/** `path?query` with undefined values left out. */
export function withQuery (path: string, query: Query = {}): string {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v))
  const qs = params.toString()
  return qs ? `${path}?${qs}` : path
}

async function failureOf (res: Response, tokenGiven: boolean): Promise<ApiFailure> {
  const text = await res.text().catch(() => '')
  let code = `http_${res.status}`
  let detail = res.statusText || 'request failed'
  try {
    const problem = JSON.parse(text) as { code?: unknown, detail?: unknown, reason?: unknown }
    if (typeof problem.code === 'string') code = problem.code
    if (typeof problem.detail === 'string') detail = problem.detail
    // /readyz answers {status, reason}, not a problem.
    else if (typeof problem.reason === 'string') detail = problem.reason
  } catch {}
  const hint = res.status === 401
    ? (tokenGiven ? 'check the token given by FLEETGATE_TOKEN, --token-file or --token' : 'no token given: set FLEETGATE_TOKEN or use --token-file')
    : res.status === 403 ? 'the token lacks the scope this needs' : undefined
  return new ApiFailure(res.status, code, detail, hint)
}

export function createApiClient (baseUrl: string, token: string | undefined): ApiClient {
  const base = new URL(baseUrl)
  const shown = displayUrl(base)
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {}

  function target (path: string, query?: Query): URL {
    // base may carry a path prefix (behind a reverse proxy): kept.
    return new URL(base.pathname.replace(/\/$/, '') + withQuery(path, query), base)
  }

  async function send (url: URL, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, init)
    } catch (err) {
      const e = err as Error & { cause?: { code?: string, message?: string } }
      if (e.name === 'AbortError') throw err
      if (e.name === 'TimeoutError') throw new NetworkError(`error: ${shown} did not answer in time`)
      const why = e.cause?.code ?? e.cause?.message ?? e.message
      throw new NetworkError(`error: cannot reach ${shown} (${why}) — is the broker running? Set FLEETGATE_URL or --url`)
    }
  }

  return {
    displayUrl: shown,

    async request<T> (method: string, path: string, options: RequestOptions = {}): Promise<ApiResult<T>> {
      const headers: Record<string, string> = { accept: 'application/json', ...auth, ...options.headers }
      let body: string | undefined
      if (options.body !== undefined) {
        headers['content-type'] = 'application/json'
        body = JSON.stringify(options.body)
      }
      const res = await send(target(path, options.query), { method, headers, body, signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS) })
      if (!res.ok) throw await failureOf(res, token !== undefined)
      const text = res.status === 204 ? '' : await res.text()
      let parsed: unknown = null
      if (text && !options.raw) {
        try { parsed = JSON.parse(text) } catch { throw new CliError(`error: ${shown} answered ${method} ${path} with something that is not JSON`) }
      }
      return { status: res.status, body: parsed as T, text, headers: res.headers }
    },

    async openStream (path, query, { signal, lastEventId }) {
      const headers: Record<string, string> = { accept: 'text/event-stream', ...auth }
      if (lastEventId !== undefined) headers['last-event-id'] = lastEventId
      const res = await send(target(path, query), { method: 'GET', headers, signal })
      if (!res.ok) throw await failureOf(res, token !== undefined)
      if (!res.body || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
        await res.body?.cancel()
        throw new CliError(`error: ${shown}${path} did not answer with an event stream`, EXIT.failed)
      }
      return res
    }
  }
}

/** Every item of a paginated list, page after page (`{items, nextCursor}`). */
export async function * allPages<T> (api: ApiClient, path: string, query: Query, maxItems = Infinity): AsyncGenerator<T> {
  let cursor: string | undefined
  let n = 0
  do {
    const page = (await api.request<{ items: T[], nextCursor?: string | null }>('GET', path, { query: { ...query, cursor } })).body
    for (const item of page.items) {
      if (n++ >= maxItems) return
      yield item
    }
    cursor = page.nextCursor ?? undefined
  } while (cursor)
}
