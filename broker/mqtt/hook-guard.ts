// Contains what goes wrong inside fleetgate's aedes hooks and event handlers
// (issue 11). aedes calls them from a socket's data handler, from timers and
// from promise callbacks; an exception thrown there reaches the process-wide
// fatal handler, and one device would stop every connection of the process
// (as a will with QoS 3 did). Every hook body runs through run(): an
// exception closes that one connection, is counted under the hook's name
// (fleetgate_mqtt_hook_errors_total{hook}) and logged with the device id.
import type { Client } from 'aedes'
import type { Logger } from '../logger.js'

export type HookName =
  | 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward'
  | 'ingest' | 'deviceMessage' | 'client' | 'clientDisconnect' | 'subscribe' | 'clientReady'
  | 'keepaliveTimeout' | 'clientError' | 'connectionError' | 'ping' | 'connection'
  | 'outboundDiscard' | 'sessionExpiry'

interface GuardedClient extends Client {
  fgDeviceId?: string
  fgReason?: string
}

export interface HookGuard {
  /** Runs fn; if it throws, the client's connection is closed and `fallback` is returned. */
  run<T> (hook: HookName, client: GuardedClient | null | undefined, fn: () => T, fallback?: T): T
  /** A callback that runs through run() when called (for timers and promise callbacks). */
  wrap<A extends unknown[]> (hook: HookName, client: GuardedClient | null | undefined, fn: (...args: A) => void): (...args: A) => void
  /**
   * What run() does with an exception, for a hot path that has its own
   * try/catch (no closure per call): counts it, logs it, closes the connection.
   */
  fail (hook: HookName, client: GuardedClient | null | undefined, err: unknown): void
}

export function createHookGuard (opts: { log: Logger, onError (hook: HookName): void }): HookGuard {
  const { log } = opts
  function contain (hook: HookName, client: GuardedClient | null | undefined, err: unknown) {
    opts.onError(hook)
    log.error({ err, hook, deviceId: client?.fgDeviceId, clientId: client?.id }, 'error in an MQTT hook; that connection is closed')
    if (!client) return
    client.fgReason = 'internal_error'
    try {
      // Destroying the socket runs aedes' own close path (will, clean-up).
      client.conn?.destroy()
    } catch (closeErr) {
      log.error({ err: closeErr, hook, deviceId: client.fgDeviceId }, 'could not close the connection after a hook error')
    }
  }
  const guard: HookGuard = {
    run (hook, client, fn, fallback?) {
      try {
        return fn()
      } catch (err) {
        contain(hook, client, err)
        return fallback as ReturnType<typeof fn>
      }
    },
    wrap (hook, client, fn) {
      return (...args) => {
        try {
          fn(...args)
        } catch (err) {
          contain(hook, client, err)
        }
      }
    },
    fail: contain
  }
  return guard
}
