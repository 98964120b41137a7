// Who may connect (issue 2, issue 7): aedes' preConnect and authenticate
// hooks. preConnect notes where the connection came from and applies the
// connection rate limit; authenticate checks client id = username = device
// id and password = device secret against the credential cache (or, on a
// mutual-TLS listener, the certificate), or admits an anonymous client in
// development mode.
//
// Refusals are CONNACK return codes for 3.1.1 and, mapped by aedes, MQTT 5
// reason codes (reason-codes.ts): identifier rejected 2 / 0x85, server
// unavailable 3 / 0x88, bad credentials 4 / 0x86, not authorized 5 / 0x87,
// each with a fixed Reason String for a v5 client that did not set Request
// Problem Information to 0. A CONNECT refused by the rate limit's full queue
// is closed unanswered for 3.1.1 (which has no code for it) and answered 0x89
// (server busy) for 5; one over MQTT_MAX_CONNECTIONS likewise, 0x97 (quota
// exceeded) for 5.
import type { TLSSocket } from 'node:tls'
import type { Socket } from 'node:net'
import mqttPacket, { type IConnectPacket } from 'mqtt-packet'
import type { AuthenticateError } from 'aedes'
import type { FleetClient } from './fleet-client.js'
import type { HookGuard } from './hook-guard.js'
import type { ConnectGate, AuthFailures } from './connection-limits.js'
import type { ExactlyOnce } from './qos2-exactly-once.js'
import type { TlsListenerOptions } from './listeners.js'
import { certificateNames } from './listeners.js'
import { REASON, RETURN_CODE } from './reason-codes.js'
import { upgradeRequestOf, clientById } from './aedes-internals.js'
import { applyServerKeepAlive } from './server-keep-alive.js'
import type { Aedes } from 'aedes'
import type { Metrics } from '../metrics.js'
import type { Logger } from '../logger.js'
import type { CredentialCache } from '../../devices/credential-cache.js'
import { isValidDeviceId } from '../../devices/device-id.js'
import { verifySecret, hashSecret } from '../../devices/device-secret.js'

type Code = typeof RETURN_CODE[keyof typeof RETURN_CODE]

// The CONNACK Reason String a v5 client is sent with each refusal (unless
// its Request Problem Information is 0): one fixed text per reason code, so
// it says no more than the code itself. Not the error's message: that tells
// an unknown device from a wrong secret, and an internal error's text could
// name internals.
const REASON_STRING: Record<Code, string> = {
  [RETURN_CODE.IDENTIFIER_REJECTED]: 'client identifier not valid: a device connects with client id = username = device id',
  [RETURN_CODE.SERVER_UNAVAILABLE]: 'server unavailable: try again later',
  [RETURN_CODE.BAD_CREDENTIALS]: 'bad user name or password',
  [RETURN_CODE.NOT_AUTHORIZED]: 'not authorized'
}

function refusal (code: Code, message: string): AuthenticateError {
  const err = new Error(message) as AuthenticateError
  err.returnCode = code
  return err
}

// A hash of a random secret, checked when the device is unknown so that an
// unknown id costs the same HMAC as a wrong secret (no timing oracle on ids).
const DUMMY_HASH = hashSecret('fleetgate-dummy-secret')

export interface AuthenticateDeps {
  aedes: () => Aedes
  credentials: CredentialCache
  allowAnonymous: boolean
  tls?: TlsListenerOptions
  gate?: ConnectGate
  authFailures: AuthFailures
  exactlyOnce: ExactlyOnce
  /** MQTT 5 Server Keep Alive (0: off), server-keep-alive.ts. */
  serverKeepAliveSeconds: number
  guard: HookGuard
  metrics: Metrics
  log: Logger
  sampled (key: string, fields: Record<string, unknown>, msg: string): void
}

export function createAuthenticateHooks (deps: AuthenticateDeps) {
  const { guard, metrics, gate, authFailures, sampled } = deps

  function preConnect (client: FleetClient, packet: IConnectPacket, done: (err: Error | null, ok: boolean) => void) {
    guard.run('preConnect', client, () => {
      // [MQTT-3.1.3-8]: a zero-length client id with CleanSession=0 gets
      // CONNACK 2. aedes would assign an id; remember it for authenticate().
      if (packet.clientId === '' && packet.clean === false) client.fgEmptyIdPersistent = true
      client.fgProtocol = packet.protocolVersion
      // Clean Session (3.1.1) or Clean Start (5): no QoS 2 state from before.
      deps.exactlyOnce.connecting(client, packet.clean !== false)
      applyServerKeepAlive(client, packet, deps.serverKeepAliveSeconds)
      const req = upgradeRequestOf(client)
      client.fgListener = req ? 'ws' : (client.conn as TLSSocket).encrypted ? 'tls' : 'tcp'
      client.fgRemote = req?.socket.remoteAddress ?? (client.conn as Socket).remoteAddress
      if (client.fgListener === 'tls') client.fgCertNames = certificateNames(client.conn as TLSSocket)
      if (client.fgOverLimit) {
        metrics.connackRefusals.inc({ code: packet.protocolVersion === 5 ? String(REASON.QUOTA_EXCEEDED) : 'none', reason: 'max_connections' })
        sampled('max_connections', { remote: client.fgRemote }, 'connection refused: MQTT_MAX_CONNECTIONS reached')
        refuseV5(client, packet, REASON.QUOTA_EXCEEDED, 'quota exceeded: too many connections, try again later')
        return done(new Error('too many connections'), false)
      }
      if (!gate) return done(null, true)
      // The connection rate limit: a reconnect storm waits here, in order.
      gate.acquire(guard.wrap('preConnect', client, (admitted: boolean) => {
        if (admitted) return done(null, true)
        metrics.connackRefusals.inc({ code: packet.protocolVersion === 5 ? String(REASON.SERVER_BUSY) : 'none', reason: 'connect_queue_full' })
        sampled('connect_queue_full', { remote: client.fgRemote }, 'connection refused: connect queue full')
        refuseV5(client, packet, REASON.SERVER_BUSY, 'server busy: connect queue full')
        done(new Error('connect queue full'), false)
      }))
    })
  }

  // aedes answers a preConnect refusal with no CONNACK (3.1.1 has no code for
  // "busy"); a v5 client is told why [MQTT-3.2.2-7], with a Reason String
  // unless it set Request Problem Information to 0.
  function refuseV5 (client: FleetClient, packet: IConnectPacket, reasonCode: number, reasonString: string) {
    if (packet.protocolVersion !== 5) return
    const properties = packet.properties?.requestProblemInformation === false ? undefined : { reasonString }
    client.conn.write(mqttPacket.generate({ cmd: 'connack', sessionPresent: false, reasonCode, ...(properties ? { properties } : {}) }, { protocolVersion: 5 }))
  }

  function authenticate (client: FleetClient, username: string | undefined, password: Buffer | undefined, done: (err: AuthenticateError | null, ok: boolean) => void) {
    check(client, username, password).then(
      guard.wrap('authenticate', client, () => { authFailures.succeeded(client.fgRemote); done(null, true) }),
      guard.wrap('authenticate', client, (err: AuthenticateError) => {
        const unexpected = err.returnCode === undefined
        const code = (err.returnCode ?? RETURN_CODE.SERVER_UNAVAILABLE) as Code
        // An unexpected error is answered as the outage it is (aedes would say 5).
        err.returnCode = code
        // Sent by the patched aedes (patches/), v5 only, when problem information is wanted.
        ;(err as AuthenticateError & { reasonString?: string }).reasonString = REASON_STRING[code] ?? REASON_STRING[RETURN_CODE.SERVER_UNAVAILABLE]
        // A stable snake_case label from our own refusals; anything else
        // (an unexpected error) is not spelled into a label.
        const reason = unexpected ? 'internal_error' : err.message.replace(/[^A-Za-z0-9]+/g, '_').toLowerCase()
        metrics.connackRefusals.inc({ code: String(code), reason })
        sampled(`connack:${reason}`, { clientId: client.id, remote: client.fgRemote, code, reason: err.message }, 'connection refused')
        // Guessing is slowed down: each failure from an address doubles the
        // wait before its next refusal is sent.
        const delay = authFailures.delayFor(client.fgRemote)
        if (code === RETURN_CODE.BAD_CREDENTIALS || code === RETURN_CODE.NOT_AUTHORIZED) authFailures.failed(client.fgRemote)
        if (delay > 0) setTimeout(guard.wrap('authenticate', client, () => done(err, false)), delay)
        else done(err, false)
      }))
  }

  async function check (client: FleetClient, username: string | undefined, password: Buffer | undefined): Promise<void> {
    if (client.fgEmptyIdPersistent) throw refusal(RETURN_CODE.IDENTIFIER_REJECTED, 'empty client id requires a clean session')
    // A verified client certificate must name this client id, whatever else is sent.
    if (client.fgCertNames && !client.fgCertNames.includes(client.id)) throw refusal(RETURN_CODE.NOT_AUTHORIZED, 'client certificate does not name this client id')
    if (client.fgListener === 'tls' && deps.tls && !deps.tls.passwordAuth) {
      // Mutual TLS: the certificate is the credential (verified by the TLS layer against the CA).
      if (!client.fgCertNames) throw refusal(RETURN_CODE.NOT_AUTHORIZED, 'client certificate required')
      if (username !== undefined && username !== client.id) throw refusal(RETURN_CODE.IDENTIFIER_REJECTED, 'client id must equal username')
      if (!isValidDeviceId(client.id)) throw refusal(RETURN_CODE.IDENTIFIER_REJECTED, 'malformed client id')
      let device
      try { device = await deps.credentials.get(client.id) } catch { throw refusal(RETURN_CODE.SERVER_UNAVAILABLE, 'credential store unavailable') }
      if (!device) throw refusal(RETURN_CODE.NOT_AUTHORIZED, 'unknown device')
      if (device.disabled) throw refusal(RETURN_CODE.NOT_AUTHORIZED, 'device disabled')
      admitDevice(client)
      return
    }
    if (username === undefined && password === undefined) {
      if (!deps.allowAnonymous) throw refusal(RETURN_CODE.NOT_AUTHORIZED, 'credentials required')
      // An anonymous client must not take over a device's session by using its id.
      if (isValidDeviceId(client.id) && await deps.credentials.get(client.id)) {
        throw refusal(RETURN_CODE.IDENTIFIER_REJECTED, 'client id belongs to a device')
      }
      client.fgAnonymous = true
      return
    }
    if (username !== client.id) throw refusal(RETURN_CODE.IDENTIFIER_REJECTED, 'client id must equal username')
    if (!isValidDeviceId(client.id)) throw refusal(RETURN_CODE.IDENTIFIER_REJECTED, 'malformed client id')
    if (!password || password.length === 0) throw refusal(RETURN_CODE.BAD_CREDENTIALS, 'password required')
    let creds
    try {
      creds = await deps.credentials.get(client.id)
    } catch (err) {
      deps.log.warn({ err: { message: (err as Error).message }, deviceId: client.id }, 'credential look-up failed')
      throw refusal(RETURN_CODE.SERVER_UNAVAILABLE, 'credential store unavailable')
    }
    const ok = verifySecret(password, creds?.secretHash ?? DUMMY_HASH)
    if (!creds || !ok) throw refusal(RETURN_CODE.BAD_CREDENTIALS, creds ? 'bad secret' : 'unknown device')
    if (creds.disabled) throw refusal(RETURN_CODE.NOT_AUTHORIZED, 'device disabled')
    admitDevice(client)
  }

  // [MQTT-3.1.4-2] take-over: aedes closes the previous connection of this
  // id (DISCONNECT 0x8E for v5); mark it so its disconnect does not flip the
  // device offline.
  function admitDevice (client: FleetClient) {
    const previous = clientById(deps.aedes(), client.id) as FleetClient | undefined
    if (previous && previous !== client) {
      previous.fgTakenOver = true
      previous.fgReason = 'taken_over'
    }
    client.fgDeviceId = client.id
  }

  return { preConnect, authenticate }
}
