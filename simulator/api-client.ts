// The REST API as the simulator and the benchmarks use it: the public
// contract (JSON under /v1, bearer token), nothing more.

export interface ApiClient {
  readonly base: string
  /** One request; the body as text whatever the status. */
  call (method: string, path: string, body?: unknown): Promise<{ status: number, text: string }>
  /** One request whose 2xx JSON answer is wanted; anything else throws with the status and the start of the body. */
  json<T> (method: string, path: string, body?: unknown): Promise<T>
  /** One request whose response is read by the caller (streams). */
  raw (method: string, path: string, body?: unknown): Promise<Response>
}

export function createApiClient (base: string, token?: string): ApiClient {
  const root = base.replace(/\/$/, '')
  const raw = (method: string, path: string, body?: unknown) => fetch(root + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  return {
    base: root,
    raw,
    async call (method, path, body) {
      const res = await raw(method, path, body)
      return { status: res.status, text: await res.text() }
    },
    async json<T> (method: string, path: string, body?: unknown) {
      const { status, text } = await this.call(method, path, body)
      if (status < 200 || status > 299) throw new Error(`${method} ${path}: ${status} ${text.slice(0, 300)}`)
      return JSON.parse(text) as T
    }
  }
}
