// One virtual device: an MQTT connection that behaves as the public contract
// says a device does (DESIGN.md, "Public contract"), and nothing of the
// broker's inside. The only device implementation of the project: the
// simulator, the benchmarks and the tests' loads all run it through a fleet
// (fleet-runner.ts).
//
// What it does:
//   - connects as client id = username = its id, password = its secret (or
//     anonymously, for plain MQTT brokers), over mqtt://, mqtts://, ws:// or
//     wss://; over mqtt:// from a chosen loopback source address if given;
//   - publishes telemetry on devices/{id}/telemetry when its fleet says so:
//     `readings` readings per message, each `{ts, seq, temp, hum, pad}` with
//     its own sequence number, so that a run can be checked reading by reading;
//   - applies configs from devices/{id}/config (newer versions only: a push can
//     race the delivery on subscribe) and reports them on …/config/reported,
//     as failed at `configFailRatio`;
//   - answers commands from devices/{id}/commands/{commandId} on …/result after
//     `commandDelayMs`, 'failed' at `commandFailRatio`;
//   - with MQTT 5 (profile.protocolVersion 5): answers a command through the
//     Response Topic the broker gave, echoing its Correlation Data, and sends
//     telemetry through a topic alias (the first PUBLISH of each connection
//     sets alias 1 with the full topic, later ones carry an empty topic), when
//     the CONNACK allows aliases (Topic Alias Maximum ≥ 1);
//   - reconnects after a drop or a refused attempt through the backoff
//     (broker/backoff.ts, the project's one retry formula), and gives up
//     after `reconnect.retries` consecutive failures.
//
// Sessions. With a persistent session (clean = false) the unacknowledged QoS 1
// messages are kept across reconnects and sent again [MQTT-4.4.0-1], so what
// the broker did not acknowledge is retransmitted; with a clean session they
// belong to the session that ended [MQTT-3.1.2-6] and are counted as lost.
//
// Topics come from devices/topics.ts, where the contract is spelled once. It
// keeps no timers of its own: delays go through the fleet's timer wheel.
import { createConnection } from 'node:net'
import mqtt, { MqttClient, type IClientOptions } from 'mqtt'
import { parseDeviceDelivery, topics } from '../devices/topics.js'
import { createBackoff, type BackoffPolicy } from '../broker/backoff.js'

export interface DeviceIdentity {
  id: string
  /** Absent: connect anonymously (plain MQTT brokers). */
  secret?: string
  /** mqtt://, mqtts://, ws:// or wss:// URL. */
  broker: string
  /** A loopback source address: more ephemeral ports than one address has (about 28,000). */
  localAddress?: string
}

/** How every device of a fleet behaves. Plain data: it crosses to a fleet process. */
export interface DeviceProfile {
  /** MQTT protocol level: 4 (3.1.1, the default) or 5. */
  protocolVersion?: 4 | 5
  qos: 0 | 1
  clean: boolean
  keepaliveSeconds: number
  connectTimeoutMs: number
  /** Readings per telemetry message: one is sent as an object, more as an array. */
  readings: number
  /** Approximate size of one reading. */
  payloadBytes: number
  /** Subscribe to devices/{id}/config, apply and report. */
  config: boolean
  /** Subscribe to devices/{id}/commands/+ and answer. */
  commands: boolean
  commandDelayMs: number
  commandFailRatio: number
  /** Share of config versions reported `failed` instead of applied (issue 13: rollouts that stop themselves); default 0. */
  configFailRatio?: number
  reconnect: BackoffPolicy
}

/** What a device tells its fleet. */
export interface DeviceObserver {
  /** CONNACK 0, `latencyMs` after the attempt started. */
  connected (d: VirtualDevice, latencyMs: number): void
  /** Connected and subscribed: ready for what the fleet asks. `first`: the first time. */
  online (d: VirtualDevice, first: boolean): void
  /** An attempt failed before CONNACK 0; `reason` has numbers replaced by N (groups alike failures). */
  connectFailed (d: VirtualDevice, reason: string): void
  /** A connection that was up went down. */
  disconnected (d: VirtualDevice): void
  /** The retries are spent; the device stays down. */
  gaveUp (d: VirtualDevice): void
  /** Something went wrong, by kind: connection, connack_N, publish, subscribe, config_report, command_result, bad_message, no_response_topic (v5). */
  error (kind: string): void
  sent (d: VirtualDevice): void
  /** A telemetry message was acknowledged (QoS 1: PUBACK; QoS 0: written); its readings' sequence numbers. */
  acked (d: VirtualDevice, seqs: number[], latencyUs: number): void
  /** An unacknowledged message left with its clean session, or its publish failed: the device has room again. */
  dropped (d: VirtualDevice): void
  configApplied (d: VirtualDevice, version: number, at: number): void
}

/** What a device needs from its fleet. */
export interface DeviceHost {
  observer: DeviceObserver
  random (): number
  /** Runs `fn` at epoch ms `at` (the fleet's timer wheel). */
  schedule (at: number, fn: () => void): void
  /** Whether a scheduled reconnect should still happen (a fleet winding down keeps only devices with messages in flight). */
  wantsConnection (d: VirtualDevice): boolean
  /** One reading as JSON; the default `{ts, seq, temp, hum, pad}` unless given. */
  reading? (seq: number, ts: number): string
}

export interface VirtualDevice {
  readonly id: string
  readonly connected: boolean
  readonly connecting: boolean
  readonly gaveUp: boolean
  /** Telemetry messages published and not yet acknowledged. */
  readonly inflight: number
  /** Starts connecting (the first time, or again after giving up is not possible). */
  connect (): void
  /** Publishes one telemetry message; false when not connected. */
  publishTelemetry (): boolean
  /** The network drops under the connection (churn); it comes back through the backoff. */
  drop (): void
  /** Closes the connection for good. */
  close (): Promise<void>
}

interface InFlight { seqs: number[], started: bigint, settled: boolean }

// mqtt.js fails a publish with these when the connection (and, for a clean
// session, its unacknowledged messages) went away: a loss, not an error.
const CONNECTION_LOSS = new Set(['Connection closed', 'client disconnecting'])

/** The one topic alias a v5 device uses: its telemetry topic. */
const TELEMETRY_ALIAS = 1

export function createVirtualDevice (identity: DeviceIdentity, profile: DeviceProfile, host: DeviceHost): VirtualDevice {
  const { id, secret } = identity
  const telemetryTopic = topics.telemetry(id)
  const { observer } = host
  const backoff = createBackoff(profile.reconnect, host.random)
  const inflight = new Set<InFlight>()
  const filler = 'x'.repeat(Math.max(0, profile.payloadBytes - 80))
  let client: MqttClient | undefined
  let connected = false
  let connecting = false
  let gaveUp = false
  let closed = false
  let everOnline = false
  let attemptStarted = 0
  let attemptError: string | undefined
  let seq = 0
  let applied = 0
  const v5 = profile.protocolVersion === 5
  // Per connection: whether the CONNACK allows an alias, and whether this connection has set it.
  let aliasAllowed = false
  let aliasSet = false

  const reading = host.reading ?? ((n: number, ts: number) =>
    `{"ts":${ts},"seq":${n},"temp":${(15 + host.random() * 15).toFixed(2)},"hum":${(30 + host.random() * 40).toFixed(1)},"pad":"${filler}"}`)

  const options: IClientOptions = {
    clientId: id,
    protocolVersion: v5 ? 5 : 4,
    ...(secret !== undefined ? { username: id, password: secret } : {}),
    clean: profile.clean,
    keepalive: profile.keepaliveSeconds,
    reconnectPeriod: 0, // reconnects are ours: the backoff, on the fleet's wheel
    connectTimeout: profile.connectTimeoutMs,
    resubscribe: false // subscribed again on every CONNACK below
  }

  function newClient (): MqttClient {
    const url = new URL(identity.broker)
    // Our own TCP socket when a source address is chosen (plain mqtt:// only); mqtt.js's otherwise.
    if (identity.localAddress && url.protocol === 'mqtt:') {
      return new MqttClient(() => createConnection({ host: url.hostname, port: Number(url.port || 1883), localAddress: identity.localAddress }), options)
    }
    return mqtt.connect(identity.broker, options)
  }

  function wire (c: MqttClient) {
    c.on('connect', (connack) => {
      // TCP_NODELAY, as the broker does (mqtt.js does not): a result or
      // reading written while an earlier packet is unacknowledged would
      // otherwise wait for the broker's delayed ACK (up to 40 ms), timing
      // this client's TCP stack instead of the broker (issue 15).
      (c.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true)
      aliasAllowed = v5 && (connack.properties?.topicAliasMaximum ?? 0) >= TELEMETRY_ALIAS
      aliasSet = false
      connected = true
      connecting = false
      backoff.reset()
      observer.connected(self, Date.now() - attemptStarted)
      const filters = [...(profile.config ? [topics.configFilter(id)] : []), ...(profile.commands ? [topics.commandsFilter(id)] : [])]
      if (filters.length === 0) { goOnline(); return }
      c.subscribe(filters, { qos: 1 }, (err, granted) => {
        if (err || granted?.some((g) => g.qos === 128)) observer.error('subscribe')
        if (connected) goOnline()
      })
    })
    c.on('message', (topic, payload, packet) => onMessage(topic, payload, packet.properties))
    c.on('error', (err: Error & { code?: unknown }) => {
      attemptError ??= err.message
      observer.error(typeof err.code === 'number' ? `connack_${err.code}` : 'connection')
    })
    c.on('close', () => {
      const was = connected
      connected = false
      if (profile.clean) dropInFlight()
      if (closed) return
      if (was) observer.disconnected(self)
      else if (connecting) observer.connectFailed(self, (attemptError ?? 'connection closed before CONNACK').replace(/\d+(\.\d+)*(:\d+)?/g, 'N'))
      else return // a close already accounted for
      const delay = backoff.next()
      if (delay === undefined) {
        connecting = false
        gaveUp = true
        observer.gaveUp(self)
        return
      }
      connecting = true
      host.schedule(Date.now() + delay, () => { if (host.wantsConnection(self)) attempt(); else connecting = false })
    })
  }

  function goOnline () {
    const first = !everOnline
    everOnline = true
    observer.online(self, first)
  }

  function attempt () {
    if (closed || gaveUp || connected) return
    connecting = true
    attemptStarted = Date.now()
    attemptError = undefined
    if (!client) {
      client = newClient()
      wire(client)
      return
    }
    // A persistent session keeps its unacknowledged messages to send again.
    client.reconnect(profile.clean ? undefined : { incomingStore: client.incomingStore, outgoingStore: client.outgoingStore })
  }

  function settle (m: InFlight): boolean {
    if (m.settled) return false
    m.settled = true
    inflight.delete(m)
    return true
  }

  function dropInFlight () {
    for (const m of [...inflight]) if (settle(m)) observer.dropped(self)
  }

  function onMessage (topic: string, payload: Buffer, properties?: { responseTopic?: string, correlationData?: Buffer }) {
    const c = client!
    try {
      const delivery = parseDeviceDelivery(id, topic)
      if (delivery?.kind === 'config') {
        const msg = JSON.parse(payload.toString()) as { version?: unknown }
        if (typeof msg.version !== 'number') throw new Error('no version')
        const version = msg.version
        if (version <= applied) return
        applied = version
        if ((profile.configFailRatio ?? 0) > 0 && host.random() < profile.configFailRatio!) {
          // The failed form of the report (README, MQTT contract).
          const report = { version, status: 'failed', error: 'simulated apply failure' }
          c.publish(topics.configReported(id), JSON.stringify(report), { qos: 1 }, (err) => { if (err) observer.error('config_report') })
          return
        }
        c.publish(topics.configReported(id), JSON.stringify({ version }), { qos: 1 }, (err) => {
          if (err) observer.error('config_report'); else observer.configApplied(self, version, Date.now())
        })
      } else if (delivery?.kind === 'command') {
        const { commandId } = delivery
        // MQTT 5: answer where the broker asked, with its Correlation Data (request / response, 4.10).
        let resultTopic = topics.commandResult(id, commandId)
        let correlationData: Buffer | undefined
        if (v5) {
          if (properties?.responseTopic) resultTopic = properties.responseTopic
          else observer.error('no_response_topic')
          correlationData = properties?.correlationData
        }
        // No delay: answered at once (the wheel's slot would add up to 20 ms to every round trip).
        const schedule = profile.commandDelayMs > 0 ? (fn: () => void) => host.schedule(Date.now() + profile.commandDelayMs, fn) : (fn: () => void) => fn()
        schedule(() => {
          if (closed) return
          const status = host.random() < profile.commandFailRatio ? 'failed' : 'succeeded'
          const opts = { qos: 1 as const, ...(correlationData ? { properties: { correlationData } } : {}) }
          c.publish(resultTopic, JSON.stringify({ status, result: { by: 'fleetgate-simulator' } }), opts, (err) => {
            if (err) observer.error('command_result')
          })
        })
      }
    } catch { observer.error('bad_message') }
  }

  const self: VirtualDevice = {
    id,
    get connected () { return connected },
    get connecting () { return connecting },
    get gaveUp () { return gaveUp },
    get inflight () { return inflight.size },

    connect () {
      if (!connecting && !connected) attempt()
    },

    publishTelemetry () {
      const c = client
      if (!c || !connected || closed) return false
      const now = Date.now()
      const seqs: number[] = []
      const parts: string[] = []
      for (let k = 0; k < profile.readings; k++) {
        const n = ++seq
        seqs.push(n)
        parts.push(reading(n, now - (profile.readings - 1 - k)))
      }
      const body = parts.length === 1 ? parts[0]! : `[${parts.join(',')}]`
      const m: InFlight = { seqs, started: process.hrtime.bigint(), settled: false }
      inflight.add(m)
      observer.sent(self)
      // MQTT 5: the first PUBLISH of a connection sets the alias, later ones use it alone.
      let topic = telemetryTopic
      let properties: { topicAlias: number } | undefined
      if (aliasAllowed) {
        properties = { topicAlias: TELEMETRY_ALIAS }
        if (aliasSet) topic = ''
        aliasSet = true
      }
      c.publish(topic, body, { qos: profile.qos, ...(properties ? { properties } : {}) }, (err) => {
        if (!settle(m)) return
        if (!err) {
          observer.acked(self, m.seqs, Number(process.hrtime.bigint() - m.started) / 1000)
          return
        }
        if (!CONNECTION_LOSS.has(err.message)) observer.error('publish')
        observer.dropped(self)
      })
      return true
    },

    drop () {
      // The socket goes away under mqtt.js, as when a network fails: no DISCONNECT.
      if (connected) client?.stream.destroy()
    },

    async close () {
      closed = true
      connecting = false
      await client?.endAsync(true).catch(() => {})
    }
  }
  return self
}

/**
 * A device that only follows its config (the config and cluster benchmarks):
 * no telemetry, no commands, a long keepalive, and a connection that is
 * retried 8 times (backoff from 1 s to 15 s) before the device gives up.
 */
export const CONFIG_FOLLOWER: DeviceProfile = {
  qos: 1,
  clean: true,
  keepaliveSeconds: 120,
  connectTimeoutMs: 30_000,
  readings: 1,
  payloadBytes: 0,
  config: true,
  commands: false,
  commandDelayMs: 0,
  commandFailRatio: 0,
  reconnect: { baseMs: 1000, maxMs: 15_000, jitter: 'full', retries: 8 }
}

/**
 * A device that only publishes QoS 1 telemetry on a clean session (the
 * ingest benchmarks: bench-ingest.ts, bench-events-overhead.ts): one reading
 * per message, nothing subscribed, a connection retried 3 times (backoff
 * from 0.5 s to 5 s) before the device gives up.
 */
export const TELEMETRY_ONLY: DeviceProfile = {
  qos: 1,
  clean: true,
  keepaliveSeconds: 60,
  connectTimeoutMs: 30_000,
  readings: 1,
  payloadBytes: 160,
  config: false,
  commands: false,
  commandDelayMs: 0,
  commandFailRatio: 0,
  reconnect: { baseMs: 500, maxMs: 5000, jitter: 'full', retries: 3 }
}
