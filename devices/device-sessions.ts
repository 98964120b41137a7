// What happens between the control plane and a connected device (issue 3):
// when it subscribes it gets its latest desired config and every unexpired
// queued command from PostgreSQL (not from an in-memory retained store);
// what it publishes on config/reported and commands/{id}/result is recorded.
import type { ConfigStore } from './config-store.js'
import type { CommandStore } from './command-store.js'
import { toMessage } from './command-store.js'
import type { DeviceDispatch } from './dispatch.js'
import { createBatchLoader } from './batch-loader.js'
import { jsonDeeperThan } from './json-depth.js'
import { coversCommands, coversConfig, topics } from './topics.js'

// Deepest nesting accepted in a report or a command result, as for REST
// bodies: deeper ones are acknowledged, ignored and counted as invalid
// (issue 11: they used to close the connection without PUBACK, so a device
// retransmitted them forever).
const MAX_REPORT_DEPTH = 64

export type DeviceMessageOutcome = 'recorded' | 'invalid' | 'unknown' | 'finished'

export interface RecordResult {
  outcome: DeviceMessageOutcome
  /** For a command result: the request id of the REST call that created the command. */
  correlationId?: string | null
  /** For a config report: seconds since that desired version was set. */
  syncLagSeconds?: number
  status?: string
}

export interface DeviceSessions {
  /** The device (re)subscribed to these filters; deliver what is waiting for it. */
  subscribed (deviceId: string, filters: string[]): Promise<void>
  configReported (deviceId: string, payload: Buffer): Promise<RecordResult>
  commandResult (deviceId: string, commandId: string, payload: Buffer): Promise<RecordResult>
}

/** PostgreSQL refused a value the device sent (SQLSTATE class 22): the message is invalid, not a failure to retry. */
function refusedValue (err: unknown): 'invalid' {
  if (typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('22')) return 'invalid'
  throw err
}

function parseObject (payload: Buffer): Record<string, unknown> | undefined {
  try {
    const text = payload.toString('utf8')
    if (jsonDeeperThan(text, MAX_REPORT_DEPTH)) return undefined
    const v = JSON.parse(text) as unknown
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined
  } catch { return undefined }
}

export function createDeviceSessions (deps: { configs: ConfigStore, commands: CommandStore, dispatch: DeviceDispatch }): DeviceSessions {
  const { configs, commands, dispatch } = deps
  // Subscriptions arrive in bursts (reconnect storms): one query per burst.
  const configOf = createBatchLoader((ids: string[]) => configs.messages(ids))
  const pendingOf = createBatchLoader((ids: string[]) => commands.pendingMany(ids))
  return {
    async subscribed (deviceId, filters) {
      if (filters.some((f) => coversConfig(deviceId, f))) {
        const msg = await configOf(deviceId)
        if (msg) await dispatch.deliver(deviceId, topics.config(deviceId), msg)
      }
      if (filters.some((f) => coversCommands(deviceId, f))) {
        const pending = await pendingOf(deviceId) ?? []
        const sent: string[] = []
        for (const c of pending) {
          if (await dispatch.deliver(deviceId, topics.command(deviceId, c.id), toMessage(c))) sent.push(c.id)
        }
        await commands.markSent(sent)
      }
    },

    async configReported (deviceId, payload) {
      const body = parseObject(payload)
      const version = body?.version
      if (!body || typeof version !== 'number' || !Number.isInteger(version) || version < 0 || version > 2_147_483_647) return { outcome: 'invalid' }
      // Issue 13: `{version}` (the form before it) and `{version, status:
      // "applied"}` mean applied; `{version, status: "failed", error}` that
      // applying failed. Another status, or an error that is not a string,
      // is invalid; an error is optional, and cut at MAX_REPORT_ERROR_CHARS.
      const status = body.status ?? 'applied'
      if ((status !== 'applied' && status !== 'failed') || (body.error !== undefined && body.error !== null && typeof body.error !== 'string')) return { outcome: 'invalid' }
      const report = { version, config: body.config, status, error: typeof body.error === 'string' ? body.error : null } as const
      const lag = await configs.recordReported(deviceId, report).catch(refusedValue)
      if (lag === 'invalid') return { outcome: 'invalid' }
      return lag === undefined ? { outcome: 'unknown' } : { outcome: 'recorded', syncLagSeconds: lag ?? undefined, status }
    },

    async commandResult (deviceId, commandId, payload) {
      const body = parseObject(payload)
      if (!body || (body.status !== 'succeeded' && body.status !== 'failed')) return { outcome: 'invalid' }
      const done = await commands.complete(deviceId, commandId, body.status, body.result).catch(refusedValue)
      if (done === 'invalid') return { outcome: 'invalid' }
      return done.outcome === 'completed'
        ? { outcome: 'recorded', correlationId: done.correlationId, status: body.status }
        : { outcome: done.outcome }
    }
  }
}
