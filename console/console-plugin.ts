// The web console (issue 14), served by the broker's own HTTP server: the
// client in console/app (preact + htm ES modules, no build step), the vendor
// modules it imports (straight from node_modules), and the session routes
// that put an operator's API token into an HttpOnly cookie. The client uses
// only the public /v1 API and its event stream; nothing here reaches into the
// broker. Every response of this plugin carries a strict Content-Security-Policy.
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyStatic from '@fastify/static'
import { Type } from 'typebox'
import { ApiError } from '../devices/api-error.js'
import { SESSION_COOKIE, csrfTokenFor, sessionTokenOf, type OperatorAuth } from '../devices/operator-auth.js'

export interface ConsoleOptions {
  auth: OperatorAuth
  /** Where index.html and the client modules are; default: console/app of this checkout. */
  appDir?: string
}

// No inline script or style anywhere (the client is external ES modules, its
// import paths are plain URLs, so no import map is needed); data: images for
// uPlot's canvas exports only.
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'"
].join('; ')

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin'
}

/** console/app next to this file, whether it runs from source (tsx) or from dist/console. */
function defaultAppDir (): string {
  const here = dirname(fileURLToPath(import.meta.url))
  const candidates = [join(here, 'app'), join(here, '..', '..', 'console', 'app')]
  const found = candidates.find((d) => existsSync(join(d, 'index.html')))
  if (!found) throw new Error(`console: no index.html in ${candidates.join(' or ')}`)
  return found
}

interface Asset { body: Buffer, type: string, etag: string }

/**
 * The vendor ES modules, read once at start-up. preact/hooks imports the bare
 * specifier "preact", which a browser cannot resolve without an import map
 * (an inline script, refused by the CSP), so that one import is rewritten to
 * the URL this plugin serves preact at. htm and uPlot import nothing.
 */
function vendorAssets (): Map<string, Asset> {
  const require = createRequire(import.meta.url)
  const dir = (specifier: string) => dirname(require.resolve(specifier))
  const files: Array<[string, string, string]> = [
    ['preact.js', join(dir('preact'), 'preact.mjs'), 'text/javascript'],
    ['preact-hooks.js', join(dir('preact/hooks'), 'hooks.mjs'), 'text/javascript'],
    ['htm.js', join(dir('htm'), 'htm.mjs'), 'text/javascript'],
    ['uplot.js', join(dir('uplot'), 'uPlot.esm.js'), 'text/javascript'],
    ['uplot.css', join(dir('uplot'), 'uPlot.min.css'), 'text/css']
  ]
  const assets = new Map<string, Asset>()
  for (const [name, path, type] of files) {
    let text = readFileSync(path, 'utf8')
    text = text.replace(/from\s*["']preact["']/g, 'from"/console/vendor/preact.js"')
    // The source maps are not served; a dangling reference only adds a 404 in devtools.
    text = text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n')
    if (type === 'text/javascript' && /\b(?:import|export)\s*(?:[\w$*{}\s,]+from\s*)?["'](?![./])/.test(text)) {
      throw new Error(`console: ${path} still imports a bare module specifier`)
    }
    const body = Buffer.from(text)
    assets.set(name, { body, type: `${type}; charset=utf-8`, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` })
  }
  return assets
}

const SessionBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false })

/** A cross-site page cannot send JSON here without a CORS preflight; an Origin naming another site is refused anyway. */
function sameOrigin (req: FastifyRequest): void {
  const origin = req.headers.origin
  if (origin === undefined) return
  let host: string | undefined
  try { host = new URL(origin).host } catch {}
  if (host !== req.host) throw new ApiError(403, 'forbidden', 'cross-origin request refused')
}

function setSessionCookie (req: FastifyRequest, reply: FastifyReply, token: string | undefined): void {
  // Secure whenever the request came over TLS (directly, or through a proxy
  // trusted with HTTP_TRUST_PROXY that says so in X-Forwarded-Proto). No
  // Max-Age: the cookie ends with the browser session.
  const attrs = ['Path=/', 'HttpOnly', 'SameSite=Strict', ...(req.protocol === 'https' ? ['Secure'] : [])]
  const value = token === undefined ? `${SESSION_COOKIE}=; Max-Age=0` : `${SESSION_COOKIE}=${encodeURIComponent(token)}`
  void reply.header('set-cookie', [value, ...attrs].join('; '))
}

export async function consolePlugin (app: FastifyInstance, opts: ConsoleOptions): Promise<void> {
  const appDir = opts.appDir ?? defaultAppDir()
  const vendor = vendorAssets()
  const index = readFileSync(join(appDir, 'index.html'))
  const hidden = { schema: { hide: true } }

  await app.register(async (scope) => {
    scope.addHook('onSend', async (_req, reply) => {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) void reply.header(k, v)
    })

    scope.get('/', hidden, async (_req, reply) => reply.redirect('/console/', 302))
    scope.get('/console', hidden, async (_req, reply) => reply.redirect('/console/', 302))
    scope.get('/console/', hidden, async (_req, reply) => {
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(index)
    })

    await scope.register(fastifyStatic, {
      root: appDir,
      prefix: '/console/app/',
      index: false,
      // max-age=0: revalidated on every load (ETag), so an upgraded broker serves its own client at once.
      cacheControl: true,
      maxAge: 0,
      schemaHide: true
    })

    scope.get<{ Params: { name: string } }>('/console/vendor/:name', hidden, async (req, reply) => {
      const asset = vendor.get(req.params.name)
      if (!asset) throw new ApiError(404, 'not_found', 'no such file')
      void reply.header('etag', asset.etag).header('cache-control', 'no-cache')
      if (req.headers['if-none-match'] === asset.etag) return reply.code(304).send()
      return reply.type(asset.type).send(asset.body)
    })

    // ---- session ----
    const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store')

    scope.get('/console/session', hidden, async (req, reply) => {
      const token = sessionTokenOf(req)
      if (token === undefined) throw new ApiError(401, 'unauthorized', 'not signed in')
      const operator = await opts.auth.verify(req, token)
      return noStore(reply).send({ csrfToken: csrfTokenFor(token), operator })
    })

    scope.post<{ Body: { token: string } }>('/console/session', { schema: { hide: true, body: SessionBody } }, async (req, reply) => {
      sameOrigin(req)
      const token = req.body.token.trim()
      const operator = await opts.auth.verify(req, token)
      setSessionCookie(req, reply, token)
      return noStore(reply).send({ csrfToken: csrfTokenFor(token), operator })
    })

    scope.delete('/console/session', hidden, async (req, reply) => {
      sameOrigin(req)
      setSessionCookie(req, reply, undefined)
      return noStore(reply).code(204).send()
    })
  })
}
