// What every API command needs, made once per run from the global options
// and the environment: the client (URL and token) and the printer. The
// environment is read here and nowhere else in the command.
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { createApiClient, type ApiClient } from './api-client.js'
import { UsageError } from './exit-codes.js'
import { createPrinter, defaultFormat, FORMATS, type Format, type Printer } from './output.js'

export const DEFAULT_URL = 'http://127.0.0.1:8080'

export interface GlobalOptions {
  url?: string
  token?: string
  tokenFile?: string
  output?: Format
}

export interface Context {
  api: ApiClient
  out: Printer
  /** Whether a person is at the terminal (confirmations, redrawn progress lines). */
  interactive: boolean
}

function readToken (source: string, path: string): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new UsageError(`${source}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  const token = text.trim()
  if (!token) throw new UsageError(`${source}: ${path} is empty`)
  return token
}

function checkUrl (source: string, value: string): string {
  let url: URL | undefined
  try { url = new URL(value) } catch {}
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UsageError(`${source}: expected an http:// or https:// URL such as ${DEFAULT_URL}, got '${value.replace(/\/\/[^@/]*@/, '//…@')}'`)
  }
  return value
}

/** The token from --token, --token-file, FLEETGATE_TOKEN or FLEETGATE_TOKEN_FILE, in that order. */
export function resolveToken (opts: GlobalOptions, env: NodeJS.ProcessEnv): string | undefined {
  if (opts.token !== undefined) {
    if (!opts.token.trim()) throw new UsageError('--token: empty; give the token, or use --token-file or FLEETGATE_TOKEN')
    return opts.token.trim()
  }
  if (opts.tokenFile !== undefined) return readToken('--token-file', opts.tokenFile)
  if (env.FLEETGATE_TOKEN) return env.FLEETGATE_TOKEN.trim()
  if (env.FLEETGATE_TOKEN_FILE) return readToken('FLEETGATE_TOKEN_FILE', env.FLEETGATE_TOKEN_FILE)
  return undefined
}

export function createContext (command: Command, env: NodeJS.ProcessEnv = process.env): Context {
  const opts = command.optsWithGlobals<GlobalOptions>()
  const url = opts.url !== undefined ? checkUrl('--url', opts.url) : checkUrl('FLEETGATE_URL', env.FLEETGATE_URL || DEFAULT_URL)
  const token = resolveToken(opts, env)
  const format = opts.output ?? defaultFormat(process.stdout)
  if (!FORMATS.includes(format)) throw new UsageError(`--output: expected one of ${FORMATS.join(', ')}, got '${String(format)}'`)
  return {
    api: createApiClient(url, token),
    out: createPrinter(format),
    interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY)
  }
}

/**
 * An AbortSignal that fires on Ctrl-C (SIGINT) or SIGTERM, for the commands
 * that run until stopped (tail, events, watch): they close their stream and
 * exit 0. `interrupted()` tells an abort from an error.
 */
export function untilInterrupted (): { signal: AbortSignal, interrupted: () => boolean, dispose: () => void } {
  const controller = new AbortController()
  let stopped = false
  const stop = () => { stopped = true; controller.abort() }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return {
    signal: controller.signal,
    interrupted: () => stopped,
    dispose: () => { process.off('SIGINT', stop); process.off('SIGTERM', stop) }
  }
}
