// Every request of the console goes through here: same-origin fetch with the
// HttpOnly session cookie (sent by the browser; the token is never visible
// to this code), the CSRF header on state-changing methods, and one place
// that turns a 401 into "back to sign-in".
let csrfToken = null
let onSessionEnded = () => {}

export function setCsrfToken (t) { csrfToken = t }
export function whenSessionEnds (fn) { onSessionEnded = fn }

export class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Human wording for an API error, with a plain note when an endpoint does not exist on this broker. */
export function describe (err, what = 'this') {
  if (!(err instanceof ApiError)) return String(err?.message ?? err)
  if (err.status === 0) return 'The broker cannot be reached. Retrying…'
  if (err.status === 404 && err.code === 'not_found' && /^no route /.test(err.message)) return `This broker does not offer ${what} (404).`
  return `${err.message} (${err.status} ${err.code})`
}

export async function request (method, path, body, opts = {}) {
  const headers = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['x-csrf-token'] = csrfToken
  let res
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' })
  } catch {
    throw new ApiError(0, 'unreachable', 'the broker cannot be reached')
  }
  if (res.status === 401 && !opts.signIn) {
    onSessionEnded('Your session has ended: the token was revoked or is no longer valid. Sign in again.')
    throw new ApiError(401, 'unauthorized', 'signed out')
  }
  if (!res.ok) {
    let problem = {}
    try { problem = await res.json() } catch {}
    throw new ApiError(res.status, problem.code ?? 'error', problem.detail ?? res.statusText)
  }
  if (res.status === 204) return null
  if (opts.text) return await res.text()
  return await res.json()
}

export const get = (path) => request('GET', path)
export const post = (path, body) => request('POST', path, body ?? {})
export const put = (path, body) => request('PUT', path, body)
export const patch = (path, body) => request('PATCH', path, body)
export const del = (path) => request('DELETE', path)

/** A query string from an object, leaving out empty values. */
export function qs (params) {
  const u = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v))
  const s = u.toString()
  return s ? '?' + s : ''
}

export const enc = encodeURIComponent
