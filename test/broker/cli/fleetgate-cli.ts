// Runs the `fleetgate` command as a user runs it: a child process from the
// TypeScript source (node --import tsx), against a test broker's HTTP port.
import { spawn, type ChildProcess } from 'node:child_process'
import type { TestBroker } from '../../helpers/broker.js'
import { TEST_ADMIN_TOKEN } from '../../helpers/broker.js'

export const ENTRY = 'broker/cli/fleetgate.ts'

export interface Run { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** The environment: the test's, without any FLEETGATE_ setting, plus `env`. */
export function cliEnv (env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEETGATE_')))
  return { ...base, ...env }
}

export function brokerEnv (broker: TestBroker, token: string | undefined = TEST_ADMIN_TOKEN): Record<string, string | undefined> {
  return { FLEETGATE_URL: `http://127.0.0.1:${broker.app.httpPort}`, FLEETGATE_TOKEN: token }
}

export interface Running { child: ChildProcess, stdout: () => string, stderr: () => string, done: Promise<Run> }

/** Runs fleetgate (or `command` with `prefix` arguments before `args`, e.g. script(1) for a terminal). */
export function start (args: string[], env: Record<string, string | undefined>, input?: string, command = process.execPath, prefix = ['--import', 'tsx', ENTRY]): Running {
  const child = spawn(command, [...prefix, ...args], { env: cliEnv(env), stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  child.stdin!.end(input ?? '')
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  return { child, stdout: () => stdout, stderr: () => stderr, done }
}

export async function fleetgate (args: string[], env: Record<string, string | undefined>, input?: string, command?: string, prefix?: string[]): Promise<Run> {
  return await start(args, env, input, command, prefix).done
}

/** `fn` over `items`, at most `n` at a time (the machine runs other tests too). */
export async function limited<T, R> (items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) { const i = next++; out[i] = await fn(items[i]!) }
  }))
  return out
}

/** A run's stdout as JSON. */
export const json = (r: Run) => JSON.parse(r.stdout)
/** Asserts exit 0, showing stderr when not. */
export const ok = (t: { is: (a: unknown, b: unknown, m?: string) => void }, r: Run, what: string) => t.is(r.code, 0, `${what}: ${r.stderr}`)
