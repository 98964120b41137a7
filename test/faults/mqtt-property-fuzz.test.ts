// A seeded, property-based MQTT 3.1.1 fuzzer (fast-check) against a real
// broker over real TCP. Where test/faults/fuzz.test.ts throws random and
// mutated bytes at the parser, this one sends packets that parse but are
// hostile in meaning: every CONNECT flag combination (will QoS 0-3, reserved
// bits, password without user name, keepalive 0..65535, protocol levels),
// client ids that are empty, too long, someone else's, not UTF-8; packet id 0;
// SUBSCRIBE with QoS 3, no filter or the same filter twice; topics of other
// devices, wildcards, $SYS, NUL, empty levels; payloads that are deep, large,
// not UTF-8 or carry impossible dates; QoS 2 retransmissions before PUBREL
// and after a reconnect or take-over; packets before CONNECT, a second
// CONNECT, PUBREL for unknown ids, DISCONNECT mid-flow, sockets cut after a will.
//
// Each fast-check run is one scenario on one fresh TCP connection, for one
// pair of devices created for that run (so what the run stored can be told
// apart from every other run). The scenario is executed step by step against
// a model of what a correct broker does (MQTT 3.1.1 and the fleetgate
// contract in DESIGN.md), and afterwards the telemetry and dead_letters tables
// are read back. Every payload carries a unique marker ("fz":"r12m3"), so
// the model knows which markers must never be stored (refused connections,
// other devices' topics, packet id 0, wills after DISCONNECT …), which must be
// stored because they were acknowledged (PUBACK means committed), and how many
// copies are allowed (QoS 2 is exactly once).
//
// Meanwhile a watchdog device (mqtt.js) publishes a QoS 1 reading every
// WATCHDOG_PERIOD_MS and must get each PUBACK within WATCHDOG_DEADLINE_MS: a
// fuzzed connection must never stall anyone else. The broker runs in this
// process, so a crash of the broker is a crash of this test.
//
// Budget and replay (a failure prints all of this, and so does a crash):
//   FLEETGATE_FUZZ_SECONDS=600  run longer than the default 20 s (in parts of
//                               at most 60 s, each an ava test, so ava's
//                               inactivity timeout does not end a long run)
//   FLEETGATE_FUZZ_SEED=123     replay a seed (printed at start of every part)
//   FLEETGATE_FUZZ_PATH=4:1:0   with the seed: replay fast-check's counterexample
//   FLEETGATE_FUZZ_VERBOSE=1    print every run's packet transcript
//   FLEETGATE_FUZZ_EXCLUDE=a,b  leave out scenarios using these features (the
//                               names are listed in the summary); for bisecting
//                               while a known defect is being fixed, never in CI
// e.g. FLEETGATE_FUZZ_SEED=123 node --import tsx test/run-tests.ts test/faults/mqtt-property-fuzz.test.ts
import test, { type ExecutionContext } from 'ava'
import fc from 'fast-check'
import { connect, type Socket } from 'node:net'
import { isUtf8 } from 'node:buffer'
import { writeSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import mqttPacket, { type Packet, type IConnectPacket } from 'mqtt-packet'
import type { MqttClient } from 'mqtt'
import { exclusive } from '../helpers/exclusive.js'
import { startTestBroker, connectDevice, type TestBroker } from '../helpers/broker.js'
import { withTimeout } from '../../broker/with-timeout.js'

// ---------------------------------------------------------------- settings

function positiveInt (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer (got ${JSON.stringify(raw)})`)
  return n
}

function integer (name: string): number {
  const n = Number(process.env[name])
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer (got ${JSON.stringify(process.env[name])})`)
  return n | 0
}

const FUZZ_SECONDS = positiveInt('FLEETGATE_FUZZ_SECONDS', 20)
const BASE_SEED = process.env.FLEETGATE_FUZZ_SEED ? integer('FLEETGATE_FUZZ_SEED') : Math.floor(Math.random() * 2 ** 31)
const REPLAY_PATH = process.env.FLEETGATE_FUZZ_PATH || undefined
const VERBOSE = process.env.FLEETGATE_FUZZ_VERBOSE === '1'
const EXCLUDED = new Set((process.env.FLEETGATE_FUZZ_EXCLUDE ?? '').split(',').map((s) => s.trim()).filter(Boolean))
/** A long run is cut into ava tests of at most this long (each with its own printed seed). */
const PART_SECONDS = 60
/** Time fast-check may spend shrinking a failure (each attempt is a real run). */
const SHRINK_SECONDS = 30
/** A reply the model expects (CONNACK, PUBACK after commit, SUBACK …). */
const REPLY_TIMEOUT_MS = 5000
/** A protocol violation must close the connection; a correct broker does it at once. */
const CLOSE_TIMEOUT_MS = 2000
const WATCHDOG_PERIOD_MS = 100
const WATCHDOG_DEADLINE_MS = 5000
// Limits set explicitly on the fuzzed broker, so the model can use them.
const TELEMETRY_MAX_BYTES = 256 * 1024
/** Deepest nesting a telemetry payload may have (its own array or object counts). */
const TELEMETRY_MAX_DEPTH = 32
const MAX_PACKET_BYTES = 1024 * 1024
const DEAD_LETTER_KEPT_BYTES = 64 * 1024

// ---------------------------------------------------------------- impossible dates
// V8's Date.parse accepts any day up to 31 in any month ('2026-09-31' is
// 1 October), so an impossible date can slip through the decoder's ISO 8601
// check. To be refused *because* it is impossible (not because it is old),
// it must fall inside the accepted ts window: the fuzzed broker keeps
// telemetry long enough to cover the latest impossible dates before today.
const DAY_MS = 86_400_000
const pad2 = (n: number) => String(n).padStart(2, '0')

function impossibleDates (now: number): { dates: string[], retentionDays: number } {
  const today = Math.floor(now / DAY_MS) * DAY_MS
  const found: Array<{ text: string, ms: number }> = []
  const current = new Date(today)
  for (let back = 0; back < 15; back++) {
    const first = new Date(Date.UTC(current.getUTCFullYear(), current.getUTCMonth() - back, 1))
    const year = first.getUTCFullYear()
    const month = first.getUTCMonth()
    const length = new Date(Date.UTC(year, month + 1, 0)).getUTCDate()
    for (let day = 31; day > length; day--) {
      const text = `${year}-${pad2(month + 1)}-${pad2(day)}`
      const ms = Date.parse(`${text}T12:00:00Z`)
      // At least a day in the past (so also a day before the future limit),
      // and at most ~100 days back (≈100 daily partitions to create).
      if (Number.isFinite(ms) && ms <= today - DAY_MS && ms >= today - 100 * DAY_MS) found.push({ text, ms })
    }
  }
  if (found.length === 0) return { dates: ['2026-02-30'], retentionDays: 30 } // V8 changed: they are invalid_ts anyway
  const oldest = Math.min(...found.map((f) => f.ms))
  return { dates: found.map((f) => f.text), retentionDays: Math.ceil((today - oldest) / DAY_MS) + 2 }
}

const IMPOSSIBLE = impossibleDates(Date.now())

// ---------------------------------------------------------------- scenario model
// Scenarios are plain data (printed by fast-check as the counterexample);
// device ids, markers and bytes are made only when a scenario runs.

type BrokerKind = 'auth' | 'anon'
type Qos = 0 | 1 | 2

type TopicSpec =
  | { t: 'own', path: 'telemetry' | 'config/reported' | 'command-result' }
  | { t: 'own-bad', path: 'other-level' | 'config' | 'empty-level' | 'trailing-slash' | 'nul' | 'long' | 'case' | 'dot-dot' | 'too-many-levels' | 'empty-command' }
  | { t: 'foreign', path: 'telemetry' | 'config/reported' | 'command-result' }
  | { t: 'wildcard', form: 'own-plus' | 'own-hash' | 'any-device' | 'hash' }
  | { t: 'sys' }
  | { t: 'devices-root' }
  | { t: 'empty' }
  | { t: 'plain', variant: 'ascii' | 'unicode' | 'nul' }
  | { t: 'invalid-utf8', under: 'plain' | 'own' }

type TsSpec = 'none' | 'iso' | 'epoch' | 'epoch-fraction' | 'impossible' | 'impossible-literal' | 'future' | 'pre-1970' | 'garbage' | 'leap-second' | 'month-13' | 'no-zone'

type PayloadSpec =
  | { p: 'reading', ts: TsSpec, pick: number }
  | { p: 'array', ts: TsSpec[] }
  | { p: 'nested', depth: number, shape: 'arrays' | 'objects' | 'top-array' }
  | { p: 'large', bytes: number }
  | { p: 'invalid-utf8' | 'not-json' | 'mixed-array' | 'nul-escape' | 'bom' }

interface WillSpec { qos: 0 | 1 | 2 | 3, retain: boolean, topic: TopicSpec, payload: PayloadSpec }

type Role = 'self' | 'other' | 'long' | 'disabled' | 'unknown'
type ClientIdSpec = 'username' | 'self' | 'other' | 'empty' | 'too-long' | 'unicode' | 'nul' | 'invalid-utf8'

interface ConnectSpec {
  /** Whose user name is sent; null: the user name flag is 0. */
  username: Role | null
  /** null: the password flag is 0. 'right' is the secret of the user name's device. */
  password: 'right' | 'wrong' | 'empty' | 'other-secret' | null
  clientId: ClientIdSpec
  clean: boolean
  keepalive: number
  will: WillSpec | null
  /** Will QoS or Will Retain bits set while the Will Flag is 0 [MQTT-3.1.2-11, -13, -15] (only when `will` is null). */
  willBitsWithoutFlag: 'none' | 'qos1' | 'qos2' | 'qos3' | 'retain'
  /** CONNECT flags bit 0 [MQTT-3.1.2-3]. */
  reservedBit: boolean
  /** Protocol Level: 4 is MQTT 3.1.1; 0 and 6 are no MQTT version at all. */
  level: 4 | 0 | 6
}

interface PublishStep {
  s: 'publish'
  qos: Qos
  id: number
  dup: boolean
  retain: boolean
  topic: TopicSpec
  payload: PayloadSpec
  /** Retransmissions (DUP=1, same id and payload); for QoS 2 before PUBREL. */
  resends: number
  /** Send the retransmissions without waiting for the first acknowledgement. */
  pipelined: boolean
  /** QoS 2: release with PUBREL at the end. */
  release: boolean
}

type FilterKind = 'own-config' | 'own-commands' | 'own-all' | 'own-telemetry' | 'foreign-config' | 'foreign-all' | 'hash' | 'plus-telemetry' | 'sys' | 'plain' | 'devices-root' | 'empty' | 'bad-plus' | 'bad-hash' | 'long'

type Step =
  | PublishStep
  | { s: 'connect', c: ConnectSpec }
  | { s: 'subscribe', id: number, filters: Array<{ f: FilterKind, qos: 0 | 1 | 2 | 3 }> }
  | { s: 'unsubscribe', id: number, filters: FilterKind[] }
  | { s: 'pubrel', id: number }
  | { s: 'client-ack', cmd: 'puback' | 'pubrec' | 'pubcomp', id: number }
  | { s: 'pingreq' }
  | { s: 'reserved', packet: 'subscribe' | 'unsubscribe' | 'pubrel' | 'pingreq' | 'disconnect' | 'puback' | 'publish-qos3' | 'type-0' | 'type-15', flags: number }
  | { s: 'disconnect' }
  /**
   * The device comes back on a new connection with the same CONNECT (no will):
   * after closing the old one abruptly, after DISCONNECT, or while it is still
   * open (take-over, [MQTT-3.1.4-2]); then retransmits its unreleased QoS 2
   * messages with DUP=1 and releases them, as a device does after a reconnect.
   */
  | { s: 'reconnect', how: 'abrupt' | 'disconnect' | 'takeover', resend: boolean }

interface Scenario {
  broker: BrokerKind
  /** A packet sent before CONNECT [MQTT-3.1.0-1]. */
  before: Step | null
  connect: ConnectSpec
  steps: Step[]
  ending: 'disconnect' | 'fin' | 'abrupt'
}

// ---------------------------------------------------------------- arbitraries

/** `arb` in one of `n` cases, else null (fc.option's `freq` is the other way round: null once in `freq`). */
function oneIn<T> (n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ withCrossShrink: true }, { weight: n - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb })
}

// Hostile choices end the connection (a correct broker closes it), so they
// are weighted low enough that most runs get several valid steps deep first.
// (withCrossShrink: a counterexample shrinks towards the first, harmless choice.)
const packetIdArb = fc.oneof(
  { withCrossShrink: true },
  // A few small ids, so that ids collide across steps (QoS 2 in flight, PUBREL).
  { weight: 5, arbitrary: fc.integer({ min: 1, max: 3 }) },
  { weight: 5, arbitrary: fc.integer({ min: 1, max: 65535 }) },
  { weight: 1, arbitrary: fc.constant(0) }
)

const tsArb: fc.Arbitrary<TsSpec> = fc.oneof(
  { withCrossShrink: true },
  { weight: 6, arbitrary: fc.constantFrom<TsSpec>('none', 'iso', 'epoch', 'epoch-fraction') },
  { weight: 3, arbitrary: fc.constantFrom<TsSpec>('impossible', 'impossible-literal') },
  { weight: 2, arbitrary: fc.constantFrom<TsSpec>('future', 'pre-1970', 'garbage', 'leap-second', 'month-13', 'no-zone') }
)

const payloadArb: fc.Arbitrary<PayloadSpec> = fc.oneof(
  { withCrossShrink: true },
  { weight: 8, arbitrary: fc.record({ p: fc.constant('reading' as const), ts: tsArb, pick: fc.nat(99) }) },
  { weight: 2, arbitrary: fc.record({ p: fc.constant('array' as const), ts: fc.array(tsArb, { minLength: 1, maxLength: 4 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      p: fc.constant('nested' as const),
      depth: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: 10_000 }), fc.constant(10_000)),
      shape: fc.constantFrom('arrays' as const, 'objects' as const, 'top-array' as const)
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      p: fc.constant('large' as const),
      // Mostly below TELEMETRY_MAX_BYTES; sometimes above it (dead letter) or
      // above MQTT_MAX_PACKET_BYTES (connection closed), never near a boundary.
      bytes: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 100, max: 64_000 }) }, { weight: 1, arbitrary: fc.constantFrom(200_000, 300_000, 1_100_000) })
    })
  },
  { weight: 2, arbitrary: fc.record({ p: fc.constantFrom('invalid-utf8' as const, 'not-json' as const, 'mixed-array' as const, 'nul-escape' as const, 'bom' as const) }) }
)

const topicArb: fc.Arbitrary<TopicSpec> = fc.oneof(
  { withCrossShrink: true },
  { weight: 18, arbitrary: fc.record({ t: fc.constant('own' as const), path: fc.constantFrom('telemetry' as const, 'telemetry' as const, 'config/reported' as const, 'command-result' as const) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('own-bad' as const), path: fc.constantFrom('other-level' as const, 'config' as const, 'empty-level' as const, 'trailing-slash' as const, 'nul' as const, 'long' as const, 'case' as const, 'dot-dot' as const, 'too-many-levels' as const, 'empty-command' as const) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('foreign' as const), path: fc.constantFrom('telemetry' as const, 'config/reported' as const, 'command-result' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('wildcard' as const), form: fc.constantFrom('own-plus' as const, 'own-hash' as const, 'any-device' as const, 'hash' as const) }) },
  { weight: 1, arbitrary: fc.constantFrom<TopicSpec>({ t: 'sys' }, { t: 'devices-root' }, { t: 'empty' }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('plain' as const), variant: fc.constantFrom('ascii' as const, 'unicode' as const, 'nul' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('invalid-utf8' as const), under: fc.constantFrom('plain' as const, 'own' as const) }) }
)

// Will topics: where a will could go (wildcards are not topic names at all).
const willTopicArb: fc.Arbitrary<TopicSpec> = fc.oneof(
  { withCrossShrink: true },
  { weight: 6, arbitrary: fc.constant<TopicSpec>({ t: 'own', path: 'telemetry' }) },
  { weight: 1, arbitrary: fc.constant<TopicSpec>({ t: 'own', path: 'config/reported' }) },
  { weight: 2, arbitrary: fc.constant<TopicSpec>({ t: 'foreign', path: 'telemetry' }) },
  { weight: 1, arbitrary: fc.constantFrom<TopicSpec>({ t: 'sys' }, { t: 'plain', variant: 'ascii' }, { t: 'own-bad', path: 'empty-level' }, { t: 'invalid-utf8', under: 'own' }) }
)

const willArb: fc.Arbitrary<WillSpec> = fc.record({
  qos: fc.oneof({ withCrossShrink: true }, { weight: 3, arbitrary: fc.constantFrom(0 as const, 1 as const, 2 as const) }, { weight: 1, arbitrary: fc.constant(3 as const) }),
  retain: fc.boolean(),
  topic: willTopicArb,
  // A will payload has a 2-byte length: at most 65,535 bytes.
  payload: payloadArb.filter((p) => p.p !== 'large' || p.bytes <= 60_000)
})

const keepaliveArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 65535 }), fc.constant(65535))

// Most runs connect as the device with its real credentials (so that the
// authenticated paths are what gets fuzzed); the rest try everything else.
const goodConnectArb: fc.Arbitrary<ConnectSpec> = fc.record({
  username: fc.oneof({ weight: 8, arbitrary: fc.constant<Role>('self') }, { weight: 1, arbitrary: fc.constant<Role>('long') }),
  password: fc.constant('right' as const),
  clientId: fc.constant<ClientIdSpec>('username'),
  clean: fc.boolean(),
  keepalive: keepaliveArb,
  will: oneIn(3, willArb),
  willBitsWithoutFlag: fc.constant('none' as const),
  reservedBit: fc.constant(false),
  level: fc.constant(4 as const)
})

const hostileConnectArb: fc.Arbitrary<ConnectSpec> = fc.record({
  username: fc.option(fc.constantFrom<Role>('self', 'other', 'long', 'disabled', 'unknown'), { freq: 4 }),
  password: fc.option(fc.constantFrom('right' as const, 'wrong' as const, 'empty' as const, 'other-secret' as const), { freq: 4 }),
  clientId: fc.constantFrom<ClientIdSpec>('username', 'self', 'other', 'empty', 'too-long', 'unicode', 'nul', 'invalid-utf8'),
  clean: fc.boolean(),
  keepalive: keepaliveArb,
  will: fc.option(willArb, { freq: 2 }),
  willBitsWithoutFlag: fc.oneof({ withCrossShrink: true }, { weight: 4, arbitrary: fc.constant('none' as const) }, { weight: 1, arbitrary: fc.constantFrom('qos1' as const, 'qos2' as const, 'qos3' as const, 'retain' as const) }),
  reservedBit: fc.oneof({ withCrossShrink: true }, { weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  level: fc.oneof({ withCrossShrink: true }, { weight: 12, arbitrary: fc.constant(4 as const) }, { weight: 1, arbitrary: fc.constantFrom(0 as const, 6 as const) })
})

const connectArb = fc.oneof({ withCrossShrink: true }, { weight: 3, arbitrary: goodConnectArb }, { weight: 1, arbitrary: hostileConnectArb })

const flag = (oneIn: number) => fc.oneof({ withCrossShrink: true }, { weight: oneIn - 1, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) })
const resendsArb = fc.oneof({ withCrossShrink: true }, { weight: 3, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 2 }) })

/** Any PUBLISH, however hostile (packet id 0, DUP on QoS 0, any topic, any payload). */
const publishArb: fc.Arbitrary<PublishStep> = fc.record({
  s: fc.constant('publish' as const),
  qos: fc.constantFrom<Qos>(0, 1, 1, 2, 2),
  id: packetIdArb,
  dup: flag(6),
  retain: flag(6),
  topic: topicArb,
  payload: payloadArb,
  resends: resendsArb,
  pipelined: fc.boolean(),
  release: flag(4).map((b) => !b)
})

/**
 * A PUBLISH a correct broker accepts on the device's own topics (or, for an
 * anonymous client, a plain topic): only its payload may be hostile, so the
 * connection lives on to the next step.
 */
const acceptablePublishArb: fc.Arbitrary<PublishStep> = fc.record({
  s: fc.constant('publish' as const),
  qos: fc.constantFrom<Qos>(0, 1, 1, 2, 2),
  id: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 65535 })),
  dup: fc.constant(false),
  retain: flag(6),
  topic: fc.oneof(
    { weight: 6, arbitrary: fc.record({ t: fc.constant('own' as const), path: fc.constantFrom('telemetry' as const, 'telemetry' as const, 'config/reported' as const, 'command-result' as const) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('plain' as const), variant: fc.constantFrom('ascii' as const, 'unicode' as const) }) }
  ),
  payload: payloadArb,
  resends: resendsArb,
  pipelined: fc.boolean(),
  release: flag(4).map((b) => !b)
})

const filterKindArb = fc.constantFrom<FilterKind>('own-config', 'own-commands', 'own-all', 'own-telemetry', 'foreign-config', 'foreign-all', 'hash', 'plus-telemetry', 'sys', 'plain', 'devices-root', 'empty', 'bad-plus', 'bad-hash', 'long')
// Filters a correct broker answers (granted or 0x80) without closing.
const answerableFilterArb = fc.constantFrom<FilterKind>('own-config', 'own-commands', 'own-all', 'own-telemetry', 'foreign-config', 'foreign-all', 'hash', 'plus-telemetry', 'sys', 'plain', 'devices-root', 'long')
const subQosArb = fc.oneof({ withCrossShrink: true }, { weight: 6, arbitrary: fc.constantFrom(0 as const, 1 as const, 2 as const) }, { weight: 1, arbitrary: fc.constant(3 as const) })
const goodIdArb = fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 65535 }))

/** Steps a correct broker answers and carries on after. */
const carryOnStepArb: fc.Arbitrary<Step> = fc.oneof(
  { withCrossShrink: true },
  { weight: 10, arbitrary: acceptablePublishArb },
  { weight: 2, arbitrary: fc.record({ s: fc.constant('subscribe' as const), id: goodIdArb, filters: fc.array(fc.record({ f: answerableFilterArb, qos: fc.constantFrom(0 as const, 1 as const, 2 as const) }), { minLength: 1, maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('unsubscribe' as const), id: goodIdArb, filters: fc.array(answerableFilterArb, { minLength: 1, maxLength: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ s: fc.constant('pubrel' as const), id: fc.oneof(fc.integer({ min: 1, max: 3 }), goodIdArb) }) },
  { weight: 1, arbitrary: fc.constant<Step>({ s: 'pingreq' }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('reconnect' as const), how: fc.constantFrom('abrupt' as const, 'disconnect' as const, 'takeover' as const), resend: flag(5).map((b) => !b) }) }
)

/** Steps that may (or must) end the connection. */
const hostileStepArb: fc.Arbitrary<Step> = fc.oneof(
  { withCrossShrink: true },
  { weight: 8, arbitrary: publishArb },
  { weight: 3, arbitrary: fc.record({ s: fc.constant('subscribe' as const), id: packetIdArb, filters: fc.array(fc.record({ f: filterKindArb, qos: subQosArb }), { minLength: 0, maxLength: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ s: fc.constant('unsubscribe' as const), id: packetIdArb, filters: fc.array(filterKindArb, { minLength: 0, maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('pubrel' as const), id: packetIdArb }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('client-ack' as const), cmd: fc.constantFrom('puback' as const, 'pubrec' as const, 'pubcomp' as const), id: packetIdArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      s: fc.constant('reserved' as const),
      packet: fc.constantFrom('subscribe' as const, 'unsubscribe' as const, 'pubrel' as const, 'pingreq' as const, 'disconnect' as const, 'puback' as const, 'publish-qos3' as const, 'type-0' as const, 'type-15' as const),
      flags: fc.integer({ min: 1, max: 15 })
    })
  },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('connect' as const), c: connectArb }) },
  { weight: 1, arbitrary: fc.constant<Step>({ s: 'disconnect' }) }
)

// Mostly steps the connection survives, so a run gets several steps deep
// (QoS 2 flows, subscriptions, wills) before something hostile ends it.
const stepArb: fc.Arbitrary<Step> = fc.oneof({ withCrossShrink: true }, { weight: 4, arbitrary: carryOnStepArb }, { weight: 1, arbitrary: hostileStepArb })

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  broker: fc.oneof({ withCrossShrink: true }, { weight: 4, arbitrary: fc.constant<BrokerKind>('auth') }, { weight: 1, arbitrary: fc.constant<BrokerKind>('anon') }),
  // Anything but CONNECT itself (that would just be the connection's first CONNECT).
  before: oneIn(12, hostileStepArb.filter((s) => s.s !== 'connect')),
  connect: connectArb,
  steps: fc.array(stepArb, { minLength: 0, maxLength: 10 }),
  ending: fc.constantFrom('disconnect' as const, 'fin' as const, 'abrupt' as const)
})

// ---------------------------------------------------------------- features
// Named hostile features of a scenario: counted for the summary (what the
// budget actually exercised) and the names FLEETGATE_FUZZ_EXCLUDE takes.

function payloadFeatures (p: PayloadSpec, out: Set<string>): void {
  if (p.p === 'reading') out.add(`ts:${p.ts}`)
  else if (p.p === 'array') for (const ts of p.ts) out.add(`ts:${ts}`)
  else if (p.p === 'nested') out.add(p.depth > 1000 ? 'payload:deep-nesting' : 'payload:nesting')
  else if (p.p === 'large') out.add(p.bytes > TELEMETRY_MAX_BYTES ? 'payload:oversized' : 'payload:large')
  else out.add(`payload:${p.p}`)
}

function connectFeatures (c: ConnectSpec, out: Set<string>): void {
  if (c.will) {
    out.add(`will-qos${c.will.qos}`)
    out.add(`will-topic:${c.will.topic.t}`)
    payloadFeatures(c.will.payload, out)
  }
  if (c.reservedBit) out.add('connect:reserved-bit')
  if (c.will === null && c.willBitsWithoutFlag !== 'none') out.add('connect:will-bits-without-flag')
  if (c.password !== null && c.username === null) out.add('connect:password-without-username')
  if (c.username !== 'self' && c.username !== 'long') out.add(`connect:username-${c.username ?? 'absent'}`)
  if (c.password !== 'right') out.add(`connect:password-${c.password ?? 'absent'}`)
  if (c.clientId !== 'username') out.add(`client-id:${c.clientId}`)
  if (c.keepalive === 0 || c.keepalive === 65535) out.add(`keepalive:${c.keepalive}`)
  if (c.level !== 4) out.add('connect:protocol-level')
}

function scenarioFeatures (s: Scenario): Set<string> {
  const out = new Set<string>([`broker:${s.broker}`, `ending:${s.ending}`])
  if (s.before) out.add(`before-connect:${s.before.s}`)
  connectFeatures(s.connect, out)
  for (const step of [...(s.before ? [s.before] : []), ...s.steps]) stepFeatures(step, out)
  return out
}

function stepFeatures (step: Step, out: Set<string>): void {
  switch (step.s) {
    case 'publish':
      out.add(`publish:qos${step.qos}`)
      if (step.qos > 0 && step.id === 0) out.add('publish-id0')
      if (step.qos === 0 && step.dup) out.add('publish-qos0-dup')
      if (step.qos === 2 && step.resends > 0) out.add('qos2-dup-before-pubrel')
      if (step.qos === 1 && step.resends > 0) out.add('qos1-resend')
      out.add(`topic:${step.topic.t}${'path' in step.topic ? ':' + step.topic.path : ''}`)
      payloadFeatures(step.payload, out)
      break
    case 'subscribe':
      if (step.id === 0) out.add('subscribe-id0')
      if (step.filters.length === 0) out.add('subscribe-empty')
      if (step.filters.some((f) => f.qos === 3)) out.add('subscribe-qos3')
      if (new Set(step.filters.map((f) => f.f)).size < step.filters.length) out.add('subscribe-duplicate-filters')
      for (const f of step.filters) out.add(`filter:${f.f}`)
      break
    case 'unsubscribe':
      if (step.id === 0) out.add('unsubscribe-id0')
      if (step.filters.length === 0) out.add('unsubscribe-empty')
      break
    case 'connect': out.add('second-connect'); connectFeatures(step.c, out); break
    case 'reserved': out.add(`reserved:${step.packet}`); break
    case 'disconnect': out.add('disconnect-mid-flow'); break
    case 'reconnect': out.add(`reconnect:${step.how}`); break
    default: out.add(step.s)
  }
}

// ---------------------------------------------------------------- encoding
// mqtt-packet's generate() for what it can express; hand-built bytes for what
// it refuses or silently "fixes" (will QoS 3, reserved bits, a password
// without a user name, SUBSCRIBE with QoS 3 or no filter, invalid UTF-8).

function varint (n: number): Buffer {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}
const u16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
const lengthPrefixed = (b: Buffer) => Buffer.concat([u16(b.length), b])
const rawPacket = (firstByte: number, ...body: Buffer[]) => { const b = Buffer.concat(body); return Buffer.concat([Buffer.from([firstByte]), varint(b.length), b]) }
/**
 * mqtt-packet's generate(), checked: it does not refuse everything it cannot
 * encode (a will payload over 65,535 bytes comes out as a truncated packet),
 * and a fuzzer that sends something other than what it reports is worse than none.
 */
function generate (p: Packet): Buffer {
  const b = mqttPacket.generate(p)
  let remaining = 0
  let i = 1
  for (let mul = 1; i < b.length; i++, mul *= 128) {
    remaining += (b[i]! & 0x7f) * mul
    if ((b[i]! & 0x80) === 0) break
  }
  if (b.length !== i + 1 + remaining) throw new Error(`mqtt-packet generate() produced an inconsistent ${p.cmd} (${b.length} bytes, remaining length ${remaining})`)
  return b
}

interface ResolvedTopic {
  bytes: Buffer
  /** How a correct broker treats a PUBLISH there. */
  kind: 'own-telemetry' | 'own-reported' | 'own-result' | 'refused' | 'plain' | 'plain-nul' | 'violation'
  rule?: string
}

function resolveTopic (spec: TopicSpec, own: string, foreign: string): ResolvedTopic {
  const utf8 = (s: string, kind: ResolvedTopic['kind'], rule?: string): ResolvedTopic => ({ bytes: Buffer.from(s, 'utf8'), kind, ...(rule ? { rule } : {}) })
  const commandId = randomUUID()
  switch (spec.t) {
    case 'own':
      if (spec.path === 'telemetry') return utf8(`devices/${own}/telemetry`, 'own-telemetry')
      if (spec.path === 'config/reported') return utf8(`devices/${own}/config/reported`, 'own-reported')
      return utf8(`devices/${own}/commands/${commandId}/result`, 'own-result')
    case 'own-bad': {
      const text = {
        'other-level': `devices/${own}/status`,
        config: `devices/${own}/config`,
        'empty-level': `devices/${own}//telemetry`,
        'trailing-slash': `devices/${own}/telemetry/`,
        nul: `devices/${own}/telemetry\u0000`,
        long: `devices/${own}/telemetry/${'x'.repeat(60_000)}`,
        case: `Devices/${own}/telemetry`,
        'dot-dot': `devices/${foreign}/../${own}/telemetry`,
        'too-many-levels': `devices/${own}/telemetry${'/a'.repeat(150)}`,
        'empty-command': `devices/${own}/commands//result`
      }[spec.path]
      return utf8(text, 'refused')
    }
    case 'foreign':
      if (spec.path === 'telemetry') return utf8(`devices/${foreign}/telemetry`, 'refused')
      if (spec.path === 'config/reported') return utf8(`devices/${foreign}/config/reported`, 'refused')
      return utf8(`devices/${foreign}/commands/${commandId}/result`, 'refused')
    case 'wildcard': {
      const text = { 'own-plus': `devices/${own}/+`, 'own-hash': `devices/${own}/#`, 'any-device': 'devices/+/telemetry', hash: '#' }[spec.form]
      return utf8(text, 'violation', '[MQTT-3.3.2-2] wildcards in a PUBLISH topic name')
    }
    case 'sys': return utf8('$SYS/fleetgate/fuzz', 'refused')
    case 'devices-root': return utf8('devices', 'refused')
    case 'empty': return utf8('', 'violation', '[MQTT-4.7.3-1] zero-length topic name')
    case 'plain':
      if (spec.variant === 'ascii') return utf8('fuzz/plain/topic', 'plain')
      if (spec.variant === 'unicode') return utf8('fuzz/ünïcødé/🚀', 'plain')
      return utf8('fuzz/a\u0000b', 'plain-nul')
    case 'invalid-utf8':
      return {
        bytes: Buffer.concat([Buffer.from(spec.under === 'own' ? `devices/${own}/telemetry` : 'fuzz/'), Buffer.from([0xff, 0xfe, 0xc0, 0x80])]),
        kind: 'violation',
        rule: '[MQTT-1.5.3-1] ill-formed UTF-8 in a topic name'
      }
  }
}

interface RenderedPayload {
  bytes: Buffer
  /** What a correct broker does with it once the PUBLISH is accepted on the device's telemetry topic. */
  fate: 'store' | 'dead' | 'store-or-dead'
  /** Every reading carries its own ts (a retransmission cannot add a row). */
  hasTs: boolean
  summary: string
}

const VALID_TS = new Set<TsSpec>(['none', 'iso', 'epoch', 'epoch-fraction'])

function renderTs (ts: TsSpec, pick: number, now: number): string | undefined {
  const dates = IMPOSSIBLE.dates
  switch (ts) {
    case 'none': return undefined
    case 'iso': return JSON.stringify(new Date(now - 60_000 - pick).toISOString())
    case 'epoch': return String(now - 120_000 - pick)
    case 'epoch-fraction': return String(now - 130_000 - pick + 0.5)
    case 'impossible': {
      const day = dates[pick % dates.length]!
      const forms = [`${day}T12:00:00Z`, `${day}T12:00:00.250+00:00`, `${day} 12:00Z`, `${day}T11:30:00-01:00`]
      return JSON.stringify(forms[pick % forms.length])
    }
    case 'impossible-literal': return JSON.stringify('2026-02-30T00:00:00Z')
    case 'future': return JSON.stringify(new Date(now + 2 * DAY_MS).toISOString())
    case 'pre-1970': return pick % 2 === 0 ? JSON.stringify('1969-12-31T23:59:59Z') : '-1'
    case 'garbage': return ['"yesterday"', 'true', '{}', '"2026-11-29"', 'null', '1e400'][pick % 6]
    case 'leap-second': return JSON.stringify(`${new Date(now - DAY_MS).toISOString().slice(0, 10)}T23:59:60Z`)
    case 'month-13': return JSON.stringify(`${new Date(now).getUTCFullYear()}-13-01T00:00:00Z`)
    case 'no-zone': return JSON.stringify(new Date(now - 60_000).toISOString().slice(0, 19))
  }
}

function readingJson (marker: string, ts: TsSpec, pick: number, now: number, extra = ''): string {
  const t = renderTs(ts, pick, now)
  return `{"fz":"${marker}","v":${pick}${t === undefined ? '' : `,"ts":${t}`}${extra}}`
}

function markerCount (p: PayloadSpec): number {
  return p.p === 'array' ? p.ts.length : 1
}

/**
 * The bytes of a payload. On config/reported and command-result topics the
 * same marker goes into a body of that topic's shape (the nesting into
 * `config` or `result`), since those are recorded in PostgreSQL as well.
 */
function renderPayload (p: PayloadSpec, markers: string[], target: 'telemetry' | 'reported' | 'result', now: number): RenderedPayload {
  const m = markers[0]!
  const text = (s: string, fate: RenderedPayload['fate'], hasTs: boolean, summary: string): RenderedPayload => ({ bytes: Buffer.from(s, 'utf8'), fate, hasTs, summary })
  const envelope = (inner: string) => target === 'reported'
    ? `{"fz":"${m}","version":1,"config":{"d":${inner}}}`
    : target === 'result'
      ? `{"fz":"${m}","status":"succeeded","result":{"d":${inner}}}`
      : `{"fz":"${m}","d":${inner}}`
  switch (p.p) {
    case 'reading': {
      if (target === 'reported') return text(`{"fz":"${m}","version":${p.pick}}`, 'dead', false, 'reported')
      if (target === 'result') return text(`{"fz":"${m}","status":"succeeded","result":{"v":${p.pick}}}`, 'dead', false, 'result')
      const ts = renderTs(p.ts, p.pick, now)
      return text(readingJson(m, p.ts, p.pick, now), VALID_TS.has(p.ts) ? 'store' : 'dead', p.ts !== 'none' && VALID_TS.has(p.ts), `reading(ts=${p.ts}${ts === undefined ? '' : ' ' + ts})`)
    }
    case 'array': {
      const body = '[' + p.ts.map((ts, i) => readingJson(markers[i]!, ts, i, now)).join(',') + ']'
      // The message is one unit: stored only if every reading is valid.
      const valid = p.ts.every((ts) => VALID_TS.has(ts))
      return text(body, valid ? 'store' : 'dead', valid && p.ts.every((ts) => ts !== 'none'), `array(${p.ts.join(',')})`)
    }
    case 'nested': {
      const d = p.depth
      if (p.shape === 'top-array') {
        // Depth 1 is a valid array of one reading; deeper, element 0 is not an object.
        const body = '['.repeat(d) + `{"fz":"${m}"}` + ']'.repeat(d)
        return text(body, d === 1 && target === 'telemetry' ? 'store' : 'dead', false, `nested(top-array,${d})`)
      }
      const inner = p.shape === 'arrays' ? '['.repeat(d) + ']'.repeat(d) : '{"a":'.repeat(d) + '1' + '}'.repeat(d)
      // Valid JSON, 1 + d levels deep: stored while within TELEMETRY_MAX_DEPTH,
      // dead-lettered (too_deep) beyond; right at the limit either, once.
      const depth = 1 + d
      const fate = depth < TELEMETRY_MAX_DEPTH ? 'store' : depth > TELEMETRY_MAX_DEPTH + 1 ? 'dead' : 'store-or-dead'
      return text(envelope(inner), target === 'telemetry' ? fate : 'dead', false, `nested(${p.shape},${d})`)
    }
    case 'large': {
      const head = `{"fz":"${m}","pad":"`
      const pad = Math.max(0, p.bytes - head.length - 2)
      return text(head + 'x'.repeat(pad) + '"}', p.bytes > TELEMETRY_MAX_BYTES ? 'dead' : 'store', false, `large(${p.bytes} B)`)
    }
    case 'invalid-utf8':
      return { bytes: Buffer.concat([Buffer.from(`{"fz":"${m}","s":"`), Buffer.from([0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from('"}')]), fate: 'dead', hasTs: false, summary: 'invalid-utf8' }
    case 'not-json': return text(`{"fz":"${m}",`, 'dead', false, 'not-json')
    case 'mixed-array': return text(`[{"fz":"${m}"},1]`, 'dead', false, 'mixed-array')
    case 'nul-escape': return text(`{"fz":"${m}","s":"a\\u0000b"}`, 'dead', false, 'nul-escape')
    case 'bom': return text(`\uFEFF{"fz":"${m}"}`, 'dead', false, 'bom')
  }
}

interface RunDevices {
  self: { id: string, secret: string }
  other: { id: string, secret: string }
  long?: { id: string, secret: string }
  disabled?: { id: string, secret: string }
  unknownId: string
  all: string[]
}

interface ResolvedConnect {
  bytes: Buffer
  label: string
  /** The device whose topics are "own" once this CONNECT is accepted. */
  own: string
  willTopic?: ResolvedTopic
  willPayload?: RenderedPayload
  willMarkers: string[]
  outcome: { kind: 'accept' | 'refuse' | 'either', anonymous: boolean } | { kind: 'violation', rule: string } | { kind: 'unsupported-level' }
}

function resolveConnect (c: ConnectSpec, broker: BrokerKind, devs: RunDevices, tag: string, markers: () => string, now: number): ResolvedConnect {
  const device = (r: Role) => r === 'self' ? devs.self : r === 'other' ? devs.other : r === 'long' ? devs.long! : r === 'disabled' ? devs.disabled! : { id: devs.unknownId, secret: 'no-such-secret' }
  const username = c.username === null ? undefined : device(c.username).id
  const password = c.password === null
    ? undefined
    : c.password === 'right'
      ? (c.username === null ? devs.self.secret : device(c.username).secret)
      : c.password === 'wrong' ? 'not-the-secret' : c.password === 'empty' ? '' : devs.other.secret
  const clientId: Buffer = {
    username: () => Buffer.from(username ?? devs.self.id),
    self: () => Buffer.from(devs.self.id),
    other: () => Buffer.from(devs.other.id),
    empty: () => Buffer.alloc(0),
    'too-long': () => Buffer.from(`${tag}-`.padEnd(129, 'x')),
    unicode: () => Buffer.from(`${tag}-dévïcé-🚀`),
    nul: () => Buffer.from(`${tag}\u0000x`),
    'invalid-utf8': () => Buffer.concat([Buffer.from(tag), Buffer.from([0xc3, 0x28])])
  }[c.clientId]()
  const ownRole = c.username === 'other' || c.username === 'long' ? c.username : 'self'
  const own = device(ownRole).id
  const foreign = own === devs.other.id ? devs.self.id : devs.other.id

  let willTopic: ResolvedTopic | undefined
  let willPayload: RenderedPayload | undefined
  const willMarkers: string[] = []
  if (c.will) {
    willTopic = resolveTopic(c.will.topic, own, foreign)
    for (let i = 0; i < markerCount(c.will.payload); i++) willMarkers.push(markers())
    willPayload = renderPayload(c.will.payload, willMarkers, willTopic.kind === 'own-reported' ? 'reported' : 'telemetry', now)
  }

  // What a correct broker does with this CONNECT.
  const violation = (rule: string): ResolvedConnect['outcome'] => ({ kind: 'violation', rule })
  let outcome: ResolvedConnect['outcome']
  // [MQTT-3.1.2-2]: an unsupported level gets CONNACK 0x01, then the connection is closed.
  if (c.level !== 4) outcome = { kind: 'unsupported-level' }
  else if (c.reservedBit) outcome = violation('[MQTT-3.1.2-3] CONNECT reserved flag set')
  else if (c.will === null && c.willBitsWithoutFlag !== 'none') outcome = violation('[MQTT-3.1.2-11/13/15] will QoS or retain set without the will flag')
  else if (c.will?.qos === 3) outcome = violation('[MQTT-3.1.2-14] will QoS 3')
  else if (password !== undefined && username === undefined) outcome = violation('[MQTT-3.1.2-22] password flag without user name flag')
  else if (!isUtf8(clientId)) outcome = violation('[MQTT-1.5.3-1] ill-formed UTF-8 client id')
  else if (willTopic && !isUtf8(willTopic.bytes)) outcome = violation('[MQTT-1.5.3-1] ill-formed UTF-8 will topic')
  else if (username === undefined) {
    // No credentials: anonymous, only where MQTT_ALLOW_ANONYMOUS is set, and
    // never with a device's id, nor an empty id without a clean session.
    const id = clientId.toString('utf8')
    if (broker === 'auth') outcome = { kind: 'refuse', anonymous: false }
    else if (devs.all.includes(id) || (id === '' && !c.clean)) outcome = { kind: 'refuse', anonymous: true }
    else if (id.includes('\u0000')) outcome = { kind: 'either', anonymous: true } // [MQTT-1.5.3-2]: MAY close
    else outcome = { kind: 'accept', anonymous: true }
  } else {
    // ('other-secret' is the right password when the user name is the other device's.)
    const ok = (c.username === 'self' || c.username === 'other' || c.username === 'long') && password === device(c.username).secret && clientId.equals(Buffer.from(username))
    outcome = { kind: ok ? 'accept' : 'refuse', anonymous: false }
  }

  const willQos = c.will ? c.will.qos : c.willBitsWithoutFlag === 'qos1' ? 1 : c.willBitsWithoutFlag === 'qos2' ? 2 : c.willBitsWithoutFlag === 'qos3' ? 3 : 0
  const willRetain = c.will ? c.will.retain : c.willBitsWithoutFlag === 'retain'
  const representable = c.level === 4 && !c.reservedBit && (c.will !== null || c.willBitsWithoutFlag === 'none') && willQos <= 2 && !(password !== undefined && username === undefined) &&
    isUtf8(clientId) && (!willTopic || isUtf8(willTopic.bytes)) && (clientId.length > 0 || c.clean)
  let bytes: Buffer
  if (representable) {
    const packet: IConnectPacket = {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: clientId.toString('utf8'),
      clean: c.clean,
      keepalive: c.keepalive,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password: Buffer.from(password) } : {}),
      ...(c.will && willTopic && willPayload ? { will: { topic: willTopic.bytes.toString('utf8'), payload: willPayload.bytes, qos: willQos as Qos, retain: willRetain } } : {})
    }
    bytes = generate(packet)
  } else {
    const flags = (username !== undefined ? 0x80 : 0) | (password !== undefined ? 0x40 : 0) | (willRetain ? 0x20 : 0) |
      (willQos << 3) | (c.will ? 0x04 : 0) | (c.clean ? 0x02 : 0) | (c.reservedBit ? 0x01 : 0)
    bytes = rawPacket(0x10,
      lengthPrefixed(Buffer.from('MQTT')), Buffer.from([c.level, flags]), u16(c.keepalive), lengthPrefixed(clientId),
      ...(c.will && willTopic && willPayload ? [lengthPrefixed(willTopic.bytes), lengthPrefixed(willPayload.bytes)] : []),
      ...(username !== undefined ? [lengthPrefixed(Buffer.from(username))] : []),
      ...(password !== undefined ? [lengthPrefixed(Buffer.from(password))] : []))
  }
  const show = (b: Buffer) => JSON.stringify(isUtf8(b) ? b.toString('utf8').slice(0, 40) : `<${b.toString('hex')}>`)
  const label = `CONNECT${c.level === 4 ? '' : ` level=${c.level}`} clientId=${show(clientId)} user=${c.username ?? '-'} pass=${c.password ?? '-'} clean=${Number(c.clean)} keepalive=${c.keepalive}` +
    (c.will ? ` will(qos=${c.will.qos} retain=${Number(c.will.retain)} topic=${show(willTopic!.bytes)} ${willPayload!.summary} ${willMarkers.join(',')})` : '') +
    (c.will === null && c.willBitsWithoutFlag !== 'none' ? ` will-bits-without-flag=${c.willBitsWithoutFlag}` : '') + (c.reservedBit ? ' reserved-bit' : '') +
    (representable ? '' : ' (hand-built)')
  return { bytes, label, own, ...(willTopic ? { willTopic } : {}), ...(willPayload ? { willPayload } : {}), willMarkers, outcome }
}

function encodePublish (topic: Buffer, payload: Buffer, qos: number, id: number, dup: boolean, retain: boolean): Buffer {
  if (isUtf8(topic) && qos <= 2) {
    return generate({ cmd: 'publish', topic: topic.toString('utf8'), payload, qos: qos as Qos, messageId: id, dup, retain })
  }
  return rawPacket(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0), lengthPrefixed(topic), ...(qos > 0 ? [u16(id)] : []), payload)
}

interface ResolvedFilter { text: string, device: boolean, anonymous: boolean, invalid: 'no' | 'empty' | 'wildcard' }

function resolveFilter (f: FilterKind, own: string, foreign: string): ResolvedFilter {
  const ok = (text: string, device: boolean, anonymous: boolean): ResolvedFilter => ({ text, device, anonymous, invalid: 'no' })
  switch (f) {
    case 'own-config': return ok(`devices/${own}/config`, true, false)
    case 'own-commands': return ok(`devices/${own}/commands/+`, true, false)
    case 'own-all': return ok(`devices/${own}/#`, true, false)
    case 'own-telemetry': return ok(`devices/${own}/telemetry`, false, false)
    case 'foreign-config': return ok(`devices/${foreign}/config`, false, false)
    case 'foreign-all': return ok(`devices/${foreign}/#`, false, false)
    case 'hash': return ok('#', false, true)
    case 'plus-telemetry': return ok('+/+/telemetry', false, true)
    case 'sys': return ok('$SYS/#', false, false)
    case 'plain': return ok('fuzz/#', false, true)
    case 'devices-root': return ok('devices', false, false)
    case 'long': return ok('fuzz/' + 'y'.repeat(60_000), false, true)
    case 'empty': return { text: '', device: false, anonymous: false, invalid: 'empty' }
    case 'bad-plus': return { text: 'fuzz/a+b', device: false, anonymous: false, invalid: 'wildcard' }
    case 'bad-hash': return { text: 'fuzz/#/x', device: false, anonymous: false, invalid: 'wildcard' }
  }
}

function encodeSubscribe (id: number, filters: Array<{ text: string, qos: number }>): Buffer {
  if (filters.length > 0 && filters.every((f) => f.qos <= 2)) {
    return generate({ cmd: 'subscribe', messageId: id, subscriptions: filters.map((f) => ({ topic: f.text, qos: f.qos as Qos })) })
  }
  return rawPacket(0x82, u16(id), ...filters.map((f) => Buffer.concat([lengthPrefixed(Buffer.from(f.text)), Buffer.from([f.qos])])))
}

function encodeUnsubscribe (id: number, filters: string[]): Buffer {
  if (filters.length > 0) return generate({ cmd: 'unsubscribe', messageId: id, unsubscriptions: filters })
  return rawPacket(0xa2, u16(id))
}

/** A packet whose fixed-header flags are not the required ones [MQTT-2.2.2-2], or of a reserved type. */
function encodeReserved (step: Extract<Step, { s: 'reserved' }>, marker: string): Buffer {
  const required: Record<string, number> = { subscribe: 2, unsubscribe: 2, pubrel: 2, pingreq: 0, disconnect: 0, puback: 0 }
  const flagsFor = (name: string) => (required[name]! ^ step.flags) & 0x0f || 0x01
  switch (step.packet) {
    case 'subscribe': return rawPacket(0x80 | flagsFor('subscribe'), u16(1), lengthPrefixed(Buffer.from('fuzz/#')), Buffer.from([0]))
    case 'unsubscribe': return rawPacket(0xa0 | flagsFor('unsubscribe'), u16(1), lengthPrefixed(Buffer.from('fuzz/#')))
    case 'pubrel': return rawPacket(0x60 | flagsFor('pubrel'), u16(1))
    case 'pingreq': return rawPacket(0xc0 | flagsFor('pingreq'))
    case 'disconnect': return rawPacket(0xe0 | flagsFor('disconnect'))
    case 'puback': return rawPacket(0x40 | flagsFor('puback'), u16(1))
    // QoS bits 11 [MQTT-3.3.1-4]; it carries a marker that must never be stored.
    case 'publish-qos3': return rawPacket(0x36, lengthPrefixed(Buffer.from('devices/x/telemetry')), u16(1), Buffer.from(`{"fz":"${marker}"}`))
    case 'type-0': return rawPacket(0x00)
    case 'type-15': return rawPacket(0xf0)
  }
}

function describeIncoming (p: Packet): string {
  switch (p.cmd) {
    case 'connack': return `CONNACK rc=${p.returnCode ?? '?'} sp=${Number(p.sessionPresent)}`
    case 'suback': return `SUBACK id=${p.messageId} granted=[${p.granted.map((g) => typeof g === 'number' ? '0x' + g.toString(16) : String(g)).join(',')}]`
    case 'publish': return `PUBLISH qos=${p.qos} id=${p.messageId ?? '-'} topic=${JSON.stringify(p.topic.slice(0, 80))}`
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp': case 'unsuback': return `${p.cmd.toUpperCase()} id=${p.messageId}`
    default: return p.cmd.toUpperCase()
  }
}

// ---------------------------------------------------------------- the wire

/** One fuzzing connection: writes bytes, parses what the broker answers, notices when it closes. */
class Wire {
  readonly received: Packet[] = []
  closed = false
  closedByUs = false
  parseError: string | undefined
  packets = 0
  bytes = 0
  lastSentAt = Date.now()
  private readonly listeners = new Set<() => void>()

  private constructor (private readonly socket: Socket, private readonly transcript: string[]) {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (p: Packet) => { this.received.push(p); this.transcript.push(`  ← ${describeIncoming(p)}`); this.notify() })
    parser.on('error', (err: Error) => { this.parseError ??= err.message; this.notify() })
    socket.on('data', (b: Buffer) => parser.parse(b))
    socket.on('error', () => {}) // ECONNRESET when the broker drops us; 'close' follows
    socket.on('close', () => {
      if (!this.closedByUs) this.transcript.push('  × the broker closed the connection')
      this.closed = true
      this.notify()
    })
  }

  static open (port: number, transcript: string[]): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1')
      socket.setNoDelay(true)
      socket.once('error', reject)
      socket.once('connect', () => { socket.off('error', reject); resolve(new Wire(socket, transcript)) })
    })
  }

  send (bytes: Buffer, label: string): void {
    if (this.closed) return
    this.packets++
    this.bytes += bytes.length
    this.lastSentAt = Date.now()
    this.transcript.push(`  → ${label} ${bytes.length <= 120 ? `[${bytes.toString('hex')}]` : `(${bytes.length} B)`}`)
    this.socket.write(bytes)
  }

  /** Resolves true as soon as `cond` holds (checked on every packet and on close), false after `timeoutMs`. */
  waitUntil (cond: () => boolean, timeoutMs: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true)
    return new Promise((resolve) => {
      const check = () => { if (cond()) done(true) }
      const timer = setTimeout(() => done(cond()), timeoutMs)
      const done = (v: boolean) => { clearTimeout(timer); this.listeners.delete(check); resolve(v) }
      this.listeners.add(check)
    })
  }

  async end (how: 'fin' | 'abrupt'): Promise<void> {
    if (this.closed) return
    this.closedByUs = true
    this.transcript.push(how === 'fin' ? '  → (socket end, no DISCONNECT)' : '  → (socket reset)')
    if (how === 'fin') this.socket.end()
    else this.socket.resetAndDestroy()
    if (!await this.waitUntil(() => this.closed, 2000)) this.socket.destroy()
  }

  destroy (): void { this.closedByUs = true; this.socket.destroy() }

  private notify (): void { for (const l of [...this.listeners]) l() }
}

// ---------------------------------------------------------------- the watchdog

/** A well-behaved device publishing QoS 1 all along; each PUBACK must come within the deadline. */
class Watchdog {
  failure: string | undefined
  acked = 0
  maxLatencyMs = 0
  private stopped = false
  private loop: Promise<void> | undefined
  private constructor (private readonly client: MqttClient, private readonly deviceId: string, private readonly label: string) {
    client.on('close', () => { if (!this.stopped) this.failure ??= `${label} watchdog lost its connection` })
  }

  static async start (broker: TestBroker, label: string): Promise<Watchdog> {
    const dev = await broker.app.devices.create({ id: `fz-watchdog-${label}` })
    const client = await connectDevice(broker.url, dev.id, dev.secret, { keepalive: 30 })
    const w = new Watchdog(client, dev.id, label)
    w.loop = w.run()
    return w
  }

  private async run (): Promise<void> {
    for (let n = 0; !this.stopped && this.failure === undefined; n++) {
      const started = Date.now()
      const ack = this.client.publishAsync(`devices/${this.deviceId}/telemetry`, JSON.stringify({ wd: n }), { qos: 1 }).then(() => true as const, (err: Error) => err)
      const result = await withTimeout(ack, WATCHDOG_DEADLINE_MS)
      const latency = Date.now() - started
      if (result === undefined) this.failure = `${this.label} watchdog: no PUBACK within ${WATCHDOG_DEADLINE_MS} ms (reading ${n})`
      else if (result !== true) this.failure = `${this.label} watchdog: publish failed: ${result.message}`
      else { this.acked++; this.maxLatencyMs = Math.max(this.maxLatencyMs, latency) }
      // The heartbeat period, not a wait for a condition.
      await sleep(WATCHDOG_PERIOD_MS)
    }
  }

  get connected (): boolean { return this.client.connected }

  async stop (): Promise<void> {
    this.stopped = true
    await this.loop
    await this.client.endAsync()
  }

  async storedCount (broker: TestBroker): Promise<number> {
    const { rows } = await broker.app.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM telemetry WHERE device_id = $1', [this.deviceId])
    return rows[0]!.n
  }
}

// ---------------------------------------------------------------- one run

interface FuzzBroker { kind: BrokerKind, broker: TestBroker, watchdog: Watchdog }

type Fate = 'forbidden' | 'store' | 'dead' | 'store-or-dead'
interface MarkerRecord { marker: string, fate: Fate, device: string, mustExist: boolean, maxCopies: number, why: string }
interface Failure { rule: string, message: string }

class Run {
  readonly transcript: string[] = []
  readonly failures: Failure[] = []
  readonly records = new Map<string, MarkerRecord>()
  /** What this run proved, for the summary: markers found absent, stored, dead-lettered; wills stored. */
  readonly verified = { forbidden: 0, stored: 0, dead: 0, wills: 0 }
  /** Features of the steps actually sent (a step after the connection closed is not). */
  readonly exercised = new Set<string>()
  private wire!: Wire
  private nextMarker = 0
  private phase: 'fresh' | 'connected' = 'fresh'
  private deviceId: string | undefined
  private anonymous = false
  private own: string
  private foreign: string
  private keepalive = 0
  private disconnectSent = false
  /** After a packet the broker may close the connection for at any later point. */
  private mayCloseAnyTime = false
  /** The CONNECT the broker accepted (a reconnect repeats it). */
  private accepted: { spec: ConnectSpec, resolved: ResolvedConnect } | undefined
  /** The accepted will that has not fired or been discarded yet. */
  private pendingWill: ResolvedConnect | undefined
  /** Every connection of the run (a reconnect opens another). */
  private readonly wires: Wire[] = []
  /** QoS 2 messages sent and not yet released (PUBREL), by packet id: what a device would retransmit. */
  private readonly inflightQos2 = new Map<number, { bytes: Buffer, label: string, recs: MarkerRecord[] }>()
  private readonly now = Date.now()

  constructor (private readonly fb: FuzzBroker, private readonly tag: string, private readonly devs: RunDevices) {
    this.own = devs.self.id
    this.foreign = devs.other.id
  }

  private marker (): string { return `${this.tag}m${this.nextMarker++}` }
  private fail (rule: string, message: string): void { this.failures.push({ rule, message }); this.transcript.push(`  !! ${rule}: ${message}`) }
  private get stopped (): boolean { return this.wire.closed || this.failures.length > 0 }

  private record (markers: string[], fate: Fate, why: string, maxCopies = 1): MarkerRecord[] {
    return markers.map((marker) => {
      const r: MarkerRecord = { marker, fate, device: this.own, mustExist: false, maxCopies, why }
      this.records.set(marker, r)
      return r
    })
  }

  /** The broker closed the connection because the keepalive ran out (1.5 × keepalive of silence) [MQTT-3.1.2-24]. */
  private keepaliveExpired (): boolean {
    return this.keepalive > 0 && Date.now() - this.wire.lastSentAt >= this.keepalive * 1500 - 250
  }

  /** Waits for the reply a correct broker sends to what was just written (received index ≥ from). */
  private async reply (from: number, match: (p: Packet) => boolean, what: string, rule: string): Promise<Packet | undefined> {
    const find = () => this.wire.received.slice(from).find(match)
    await this.wire.waitUntil(() => find() !== undefined || this.wire.closed, REPLY_TIMEOUT_MS)
    const p = find()
    if (p) return p
    if (this.wire.closed && (this.keepaliveExpired() || this.mayCloseAnyTime)) return undefined
    this.fail(rule, this.wire.closed ? `expected ${what}; the broker closed the connection instead` : `expected ${what} within ${REPLY_TIMEOUT_MS} ms; got nothing`)
    return undefined
  }

  /** A protocol violation: a correct broker closes the connection (3.1.1 §4.8) and answers nothing. */
  private async mustClose (from: number, answer: (p: Packet) => boolean, rule: string, why: string): Promise<void> {
    const answered = () => this.wire.received.slice(from).find(answer)
    await this.wire.waitUntil(() => this.wire.closed || answered() !== undefined, CLOSE_TIMEOUT_MS)
    const a = answered()
    if (a) this.fail(rule, `${why}: the broker must close the connection, but it answered ${describeIncoming(a)}`)
    else if (!this.wire.closed) this.fail(rule, `${why}: the broker must close the connection; still open after ${CLOSE_TIMEOUT_MS} ms`)
  }

  async execute (s: Scenario): Promise<void> {
    this.wire = await Wire.open(this.fb.broker.app.mqttPort, this.transcript)
    this.wires.push(this.wire)
    this.exercised.add(`broker:${s.broker}`)
    try {
      if (s.before) await this.step(s.before)
      if (!this.stopped) {
        connectFeatures(s.connect, this.exercised)
        await this.connect(s.connect, false)
      }
      for (const step of s.steps) {
        if (this.stopped) break
        await this.step(step)
      }
      if (!this.wire.closed) {
        this.exercised.add(`ending:${s.ending}`)
        if (s.ending === 'disconnect') this.disconnect()
        await this.wire.end(s.ending === 'abrupt' ? 'abrupt' : 'fin')
      }
      this.checkIncoming()
    } finally {
      for (const w of this.wires) w.destroy()
      this.settleWill(this.disconnectSent ? (this.mayCloseAnyTime ? 'maybe' : 'discarded') : 'fired')
    }
  }

  get packets (): number { return this.wires.reduce((n, w) => n + w.packets, 0) }
  get bytes (): number { return this.wires.reduce((n, w) => n + w.bytes, 0) }
  get connected (): boolean { return this.accepted !== undefined }

  private async step (step: Step): Promise<void> {
    if (this.phase === 'fresh' && step.s !== 'connect') {
      this.exercised.add(`before-connect:${step.s}`)
      return await this.beforeConnect(step)
    }
    stepFeatures(step, this.exercised)
    switch (step.s) {
      case 'connect': return await this.connect(step.c, true)
      case 'publish': return await this.publish(step)
      case 'subscribe': return await this.subscribe(step)
      case 'unsubscribe': return await this.unsubscribe(step)
      case 'pubrel': return await this.pubrel(step.id)
      case 'client-ack':
        // Acks for messages the broker never sent: no rule says what then. It
        // may ignore them or close the connection, now or a little later (aedes
        // closes a persistent session's on an unknown PUBREC once its store
        // says so, and on id 0), but it must stay up.
        this.wire.send(generate({ cmd: step.cmd, messageId: step.id }), `${step.cmd.toUpperCase()} id=${step.id}`)
        this.mayCloseAnyTime = true
        await this.barrier()
        return
      case 'pingreq': {
        const from = this.wire.received.length
        this.wire.send(generate({ cmd: 'pingreq' }), 'PINGREQ')
        await this.reply(from, (p) => p.cmd === 'pingresp', 'PINGRESP', '[MQTT-3.12.4-1]')
        return
      }
      case 'reserved': {
        const from = this.wire.received.length
        const marker = this.marker()
        if (step.packet === 'publish-qos3') this.record([marker], 'forbidden', 'PUBLISH with QoS 3')
        const bytes = encodeReserved(step, marker)
        this.wire.send(bytes, `${step.packet} with reserved flags/type (first byte 0x${bytes[0]!.toString(16)})`)
        await this.mustClose(from, (p) => p.cmd !== 'publish', '[MQTT-2.2.2-2]', `${step.packet} with invalid fixed-header flags`)
        return
      }
      case 'disconnect': this.disconnect(); await this.wire.end('fin'); return
      case 'reconnect': return await this.reconnect(step)
    }
  }

  /**
   * After a packet a correct broker may either ignore or close the connection
   * for: a PINGREQ round trip shows which (PINGRESP: it was processed and the
   * connection lives on). The PINGREQ is the fuzzer's, not the scenario's.
   */
  private async barrier (): Promise<void> {
    const from = this.wire.received.length
    this.wire.send(generate({ cmd: 'pingreq' }), 'PINGREQ (barrier)')
    await this.wire.waitUntil(() => this.wire.closed || this.wire.received.slice(from).some((p) => p.cmd === 'pingresp'), REPLY_TIMEOUT_MS)
  }

  private disconnect (): void {
    if (this.wire.closed) return
    // The broker may be closing the connection for an expired keepalive just now.
    if (this.keepaliveExpired()) this.mayCloseAnyTime = true
    this.wire.send(generate({ cmd: 'disconnect' }), 'DISCONNECT')
    // [MQTT-3.14.4-3]: the will is discarded, not published.
    if (this.phase === 'connected') this.disconnectSent = true
  }

  /** Anything before CONNECT [MQTT-3.1.0-1]: the connection is closed, nothing is processed. */
  private async beforeConnect (step: Step): Promise<void> {
    const from = this.wire.received.length
    let bytes: Buffer
    let label: string
    switch (step.s) {
      case 'publish': {
        const topic = resolveTopic(step.topic, this.own, this.foreign)
        const markers = Array.from({ length: markerCount(step.payload) }, () => this.marker())
        const payload = renderPayload(step.payload, markers, 'telemetry', this.now)
        this.record(markers, 'forbidden', 'PUBLISH before CONNECT')
        bytes = encodePublish(topic.bytes, payload.bytes, step.qos, step.id, step.dup, step.retain)
        label = `PUBLISH qos=${step.qos} id=${step.id} (before CONNECT) ${markers.join(',')}`
        break
      }
      case 'subscribe': bytes = encodeSubscribe(Math.max(1, step.id), [{ text: 'fuzz/#', qos: 1 }]); label = 'SUBSCRIBE (before CONNECT)'; break
      case 'unsubscribe': bytes = encodeUnsubscribe(Math.max(1, step.id), ['fuzz/#']); label = 'UNSUBSCRIBE (before CONNECT)'; break
      case 'pubrel': bytes = generate({ cmd: 'pubrel', messageId: step.id }); label = 'PUBREL (before CONNECT)'; break
      case 'client-ack': bytes = generate({ cmd: step.cmd, messageId: step.id }); label = `${step.cmd.toUpperCase()} (before CONNECT)`; break
      case 'disconnect': bytes = generate({ cmd: 'disconnect' }); label = 'DISCONNECT (before CONNECT)'; break
      case 'reserved': {
        const marker = this.marker()
        if (step.packet === 'publish-qos3') this.record([marker], 'forbidden', 'PUBLISH with QoS 3 before CONNECT')
        bytes = encodeReserved(step, marker); label = `${step.packet} reserved (before CONNECT)`; break
      }
      default: bytes = generate({ cmd: 'pingreq' }); label = 'PINGREQ (before CONNECT)'
    }
    this.wire.send(bytes, label)
    await this.mustClose(from, () => true, '[MQTT-3.1.0-1]', `${step.s} before CONNECT`)
  }

  private async connect (c: ConnectSpec, second: boolean): Promise<void> {
    const from = this.wire.received.length
    const r = resolveConnect(c, this.fb.kind, this.devs, this.tag, () => this.marker(), this.now)
    // A will that is never registered must never be published.
    for (const m of r.willMarkers) this.records.set(m, { marker: m, fate: 'forbidden', device: r.own, mustExist: false, maxCopies: 1, why: 'will of a CONNECT that must not be accepted' })
    this.wire.send(r.bytes, second ? `${r.label} (second CONNECT)` : r.label)
    if (second) {
      await this.mustClose(from, (p) => p.cmd === 'connack', '[MQTT-3.1.0-2]', 'a second CONNECT')
      return
    }
    const connack = () => this.wire.received.slice(from).find((p) => p.cmd === 'connack')
    const o = r.outcome
    if (o.kind === 'unsupported-level') {
      await this.wire.waitUntil(() => this.wire.closed || connack() !== undefined, CLOSE_TIMEOUT_MS)
      const ack = connack()
      const rc = ack?.cmd === 'connack' ? ack.returnCode : undefined
      if (rc !== 1) this.fail('[MQTT-3.1.2-2]', `protocol level ${c.level}: the broker must answer CONNACK 0x01 (unacceptable protocol version), got ${rc === undefined ? (this.wire.closed ? 'the connection closed without one' : 'nothing') : `CONNACK ${rc}`}`)
      else await this.mustClose(from, (p) => p.cmd !== 'connack', '[MQTT-3.1.2-2]', 'after CONNACK 0x01')
      return
    }
    if (o.kind === 'violation') {
      await this.wire.waitUntil(() => this.wire.closed || connack() !== undefined, CLOSE_TIMEOUT_MS)
      const ack = connack()
      if (ack?.cmd === 'connack' && ack.returnCode === 0) this.fail(o.rule, 'CONNECT accepted (CONNACK 0); the broker must close the connection')
      else await this.mustClose(from, (p) => p.cmd !== 'connack', o.rule, 'malformed CONNECT')
      return
    }
    await this.wire.waitUntil(() => this.wire.closed || connack() !== undefined, REPLY_TIMEOUT_MS)
    const ack = connack()
    const rc = ack?.cmd === 'connack' ? ack.returnCode ?? -1 : undefined
    if (o.kind === 'refuse' || (o.kind === 'either' && rc !== 0)) {
      if (rc === 0) { this.fail('auth', 'CONNECT with these credentials must be refused, got CONNACK 0'); return }
      if (o.kind === 'refuse' && rc === undefined) this.fail('[MQTT-3.2.2-5]', 'a refused CONNECT must get a CONNACK with a non-zero return code (the device sees why), got none')
      else if (rc !== undefined && (rc < 1 || rc > 5)) this.fail('§3.2.2.3 return code', `CONNACK return code ${rc} is not one of 1-5`)
      if (!this.wire.closed && !await this.wire.waitUntil(() => this.wire.closed, CLOSE_TIMEOUT_MS)) this.fail('[MQTT-3.2.2-5]', 'a refused CONNECT must be followed by closing the connection')
      return
    }
    if (rc !== 0) { this.fail('auth', rc === undefined ? 'valid CONNECT got no CONNACK' : `valid CONNECT refused with CONNACK ${rc}`); return }
    if (ack?.cmd === 'connack' && ack.sessionPresent) this.fail('[MQTT-3.2.2-1/3]', 'a new client id got sessionPresent=1')
    this.phase = 'connected'
    this.accepted = { spec: c, resolved: r }
    if (r.willMarkers.length > 0) this.pendingWill = r
    this.anonymous = o.anonymous
    this.deviceId = o.anonymous ? undefined : r.own
    this.own = r.own
    this.foreign = r.own === this.devs.other.id ? this.devs.self.id : this.devs.other.id
    this.keepalive = c.keepalive
  }

  /**
   * When a connection is over, its will: 'fired' (it ended without
   * DISCONNECT: published exactly once [MQTT-3.1.2-8]), 'discarded' (after
   * DISCONNECT [MQTT-3.14.4-3]: never), 'maybe' (the broker may have closed
   * the connection on its own before reading the DISCONNECT, or it was taken
   * over, where 3.1.1 does not say: at most once).
   */
  private settleWill (how: 'fired' | 'discarded' | 'maybe'): void {
    const r = this.pendingWill
    this.pendingWill = undefined
    if (!r?.willTopic || !r.willPayload) return
    const storable = how !== 'discarded' && this.deviceId !== undefined && r.willTopic.kind === 'own-telemetry'
    const why = how === 'discarded' ? 'will after DISCONNECT [MQTT-3.14.4-3]' : how === 'maybe' ? 'will, maybe published' : 'will'
    for (const m of r.willMarkers) {
      this.records.set(m, { marker: m, fate: storable ? r.willPayload.fate : 'forbidden', device: r.own, mustExist: storable && how === 'fired', maxCopies: 1, why })
    }
  }

  private async reconnect (step: Extract<Step, { s: 'reconnect' }>): Promise<void> {
    const before = this.accepted
    // An anonymous client has no session to come back to.
    if (!before || this.deviceId === undefined) return
    const old = this.wire
    this.transcript.push(`  ~~ reconnect (${step.how}, clean=${Number(before.spec.clean)}) ~~`)
    if (step.how === 'disconnect') this.disconnect()
    if (step.how !== 'takeover') {
      await old.end(step.how === 'abrupt' ? 'abrupt' : 'fin')
      this.settleWill(this.disconnectSent ? (this.mayCloseAnyTime ? 'maybe' : 'discarded') : 'fired')
    }
    this.disconnectSent = false
    this.mayCloseAnyTime = false
    this.wire = await Wire.open(this.fb.broker.app.mqttPort, this.transcript)
    this.wires.push(this.wire)
    const spec: ConnectSpec = { ...before.spec, will: null, willBitsWithoutFlag: 'none' }
    const r = resolveConnect(spec, this.fb.kind, this.devs, this.tag, () => this.marker(), this.now)
    this.wire.send(r.bytes, r.label)
    const ack = await this.reply(0, (p) => p.cmd === 'connack', 'CONNACK', 'reconnect')
    if (ack?.cmd === 'connack' && ack.returnCode !== 0) this.fail('reconnect', `the same credentials got CONNACK ${ack.returnCode} on reconnecting`)
    if (this.stopped) return
    if (step.how === 'takeover') {
      // [MQTT-3.1.4-2]: the broker disconnects the existing connection of this client id.
      if (!await old.waitUntil(() => old.closed, CLOSE_TIMEOUT_MS)) this.fail('[MQTT-3.1.4-2]', 'the connection taken over is still open')
      this.settleWill('maybe')
    }
    // [MQTT-3.1.2-6]: with CleanSession=1 the QoS 2 state went with the old
    // connection, so a retransmission is a new message (one more copy allowed).
    if (before.spec.clean) for (const f of this.inflightQos2.values()) for (const rec of f.recs) rec.maxCopies++
    if (!step.resend) { if (before.spec.clean) this.inflightQos2.clear(); return }
    for (const [id, f] of [...this.inflightQos2]) {
      if (this.stopped) break
      const from = this.wire.received.length
      const dup = Buffer.from(f.bytes)
      dup[0] = dup[0]! | 0x08
      this.wire.send(dup, `${f.label} (retransmitted after reconnect, dup=1)`)
      const rec = await this.reply(from, (p) => p.cmd === 'pubrec' && p.messageId === id, `PUBREC id=${id}`, '[MQTT-4.3.3-2] PUBREC')
      if (rec) for (const m of f.recs) m.mustExist = m.fate !== 'forbidden'
      if (!this.stopped) await this.pubrel(id)
    }
  }

  private async publish (s: PublishStep): Promise<void> {
    const from = this.wire.received.length
    const topic = resolveTopic(s.topic, this.own, this.foreign)
    const target = topic.kind === 'own-reported' ? 'reported' : topic.kind === 'own-result' ? 'result' : 'telemetry'
    const markers = Array.from({ length: markerCount(s.payload) }, () => this.marker())
    const payload = renderPayload(s.payload, markers, target, this.now)
    const bytes = encodePublish(topic.bytes, payload.bytes, s.qos, s.id, s.dup, s.retain)
    const label = (dup: boolean) => `PUBLISH qos=${s.qos} id=${s.id} dup=${Number(dup)} retain=${Number(s.retain)} topic=${JSON.stringify(isUtf8(topic.bytes) ? topic.bytes.toString('utf8').slice(0, 60) : '<invalid utf-8>')} ${payload.summary} ${markers.join(',')}`
    const remaining = bytes.length - 1 - varint(bytes.length).length

    // What a correct broker does with it.
    let violation: { rule: string, why: string } | undefined
    if (remaining > MAX_PACKET_BYTES) violation = { rule: 'MQTT_MAX_PACKET_BYTES', why: `a ${remaining}-byte packet` }
    else if (s.qos > 0 && s.id === 0) violation = { rule: '[MQTT-2.3.1-1]', why: `QoS ${s.qos} PUBLISH with packet id 0` }
    else if (s.qos === 0 && s.dup) violation = { rule: '[MQTT-3.3.1-2]', why: 'QoS 0 PUBLISH with DUP=1' }
    else if (topic.kind === 'violation') violation = { rule: topic.rule!, why: 'PUBLISH topic' }
    const authorized = this.deviceId !== undefined ? topic.kind.startsWith('own-') : topic.kind === 'plain'
    const optional = this.anonymous && topic.kind === 'plain-nul' // [MQTT-1.5.3-2]: MAY close
    if (!violation && !authorized && !optional) violation = { rule: '[MQTT-3.3.5-2]', why: `PUBLISH to ${JSON.stringify(topic.bytes.toString('utf8').slice(0, 60))} by ${this.deviceId ?? 'an anonymous client'}` }

    if (violation) {
      this.record(markers, 'forbidden', `${violation.rule} ${violation.why}`)
      this.wire.send(bytes, label(s.dup))
      const ackCmd = s.qos === 1 ? 'puback' : 'pubrec'
      await this.mustClose(from, (p) => s.qos > 0 && p.cmd === ackCmd, violation.rule, violation.why)
      return
    }

    // Accepted. Which of its markers may end up in telemetry, and how often.
    const duplicateId = s.qos === 2 && this.inflightQos2.has(s.id)
    const fate: Fate = duplicateId || topic.kind !== 'own-telemetry' || this.deviceId === undefined ? 'forbidden' : payload.fate
    const copies = s.qos === 2 || payload.hasTs ? 1 : 1 + s.resends
    const why = duplicateId ? `[MQTT-4.3.3-2] QoS 2 PUBLISH reusing id ${s.id} before its PUBREL` : `QoS ${s.qos} PUBLISH`
    const recs = this.record(markers, fate, why, copies)
    if (optional) {
      this.wire.send(bytes, label(s.dup))
      await this.barrier()
      return
    }
    if (s.qos === 0) { this.wire.send(bytes, label(s.dup)); return }

    const ackCmd = s.qos === 1 ? 'puback' : 'pubrec'
    const rule = s.qos === 1 ? '[MQTT-4.3.2-2] PUBACK (after commit)' : '[MQTT-4.3.3-2] PUBREC'
    const acks = () => this.wire.received.slice(from).filter((p) => p.cmd === ackCmd && p.messageId === s.id).length
    const sends = 1 + s.resends
    if (s.qos === 2 && !duplicateId) this.inflightQos2.set(s.id, { bytes, label: label(false), recs })
    for (let i = 0; i < sends && !this.stopped; i++) {
      this.wire.send(bytes, label(i > 0 || s.dup))
      if (i > 0 && s.qos === 2 && !s.pipelined) this.transcript.push('    (retransmission before PUBREL)')
      if (!s.pipelined) {
        const before = acks()
        await this.reply(this.wire.received.length, (p) => p.cmd === ackCmd && p.messageId === s.id, `${ackCmd.toUpperCase()} id=${s.id}`, rule)
        if (acks() <= before && !this.stopped) break
      }
    }
    if (s.pipelined && !this.stopped) {
      if (!await this.wire.waitUntil(() => acks() >= sends || this.wire.closed, REPLY_TIMEOUT_MS) && !this.wire.closed) {
        this.fail(rule, `expected ${sends} × ${ackCmd.toUpperCase()} id=${s.id}, got ${acks()}`)
      } else if (acks() < sends && !this.keepaliveExpired() && !this.mayCloseAnyTime) this.fail(rule, `expected ${sends} × ${ackCmd.toUpperCase()} id=${s.id}; the broker closed the connection after ${acks()}`)
    }
    // An acknowledgement means committed (DESIGN.md, "ack after commit").
    if (acks() > 0) for (const r of recs) r.mustExist = r.fate !== 'forbidden'
    if (s.qos === 2 && s.release && !this.stopped) await this.pubrel(s.id)
  }

  private async pubrel (id: number): Promise<void> {
    const from = this.wire.received.length
    this.wire.send(generate({ cmd: 'pubrel', messageId: id }), `PUBREL id=${id}${this.inflightQos2.has(id) ? '' : ' (unknown id)'}`)
    this.inflightQos2.delete(id)
    if (id === 0) {
      // Not a valid id, but no rule says what then: PUBCOMP or close, either is fine.
      await this.barrier()
      return
    }
    // 3.1.1 §3.6.4: the receiver responds to PUBREL with PUBCOMP, the same id (also one it does not know).
    await this.reply(from, (p) => p.cmd === 'pubcomp' && p.messageId === id, `PUBCOMP id=${id}`, '§3.6.4 PUBCOMP')
  }

  private async subscribe (s: Extract<Step, { s: 'subscribe' }>): Promise<void> {
    const from = this.wire.received.length
    const filters = s.filters.map((f) => ({ ...resolveFilter(f.f, this.own, this.foreign), qos: f.qos }))
    this.wire.send(encodeSubscribe(s.id, filters), `SUBSCRIBE id=${s.id} [${filters.map((f) => `${JSON.stringify(f.text.slice(0, 40))}:q${f.qos}`).join(', ')}]`)
    const isSuback = (p: Packet) => p.cmd === 'suback'
    if (s.id === 0) return await this.mustClose(from, isSuback, '[MQTT-2.3.1-1]', 'SUBSCRIBE with packet id 0')
    if (filters.length === 0) return await this.mustClose(from, isSuback, '[MQTT-3.8.3-3]', 'SUBSCRIBE without a topic filter')
    if (filters.some((f) => f.qos === 3)) return await this.mustClose(from, isSuback, '[MQTT-3.8.3-4]', 'SUBSCRIBE with requested QoS 3')
    if (filters.some((f) => f.invalid === 'empty')) return await this.mustClose(from, isSuback, '[MQTT-4.7.3-1]', 'SUBSCRIBE with an empty topic filter')
    const hasInvalid = filters.some((f) => f.invalid === 'wildcard')
    await this.wire.waitUntil(() => this.wire.closed || this.wire.received.slice(from).some(isSuback), REPLY_TIMEOUT_MS)
    const ack = this.wire.received.slice(from).find(isSuback)
    if (!ack || ack.cmd !== 'suback') {
      // A malformed wildcard may close the connection [MQTT-4.7.1-2/3].
      if (!hasInvalid && !this.keepaliveExpired() && !(this.wire.closed && this.mayCloseAnyTime)) this.fail('[MQTT-3.8.4-1] SUBACK', this.wire.closed ? 'the broker closed the connection instead of SUBACK' : 'no SUBACK')
      return
    }
    if (ack.messageId !== s.id) this.fail('[MQTT-3.8.4-2]', `SUBACK id ${ack.messageId}, expected ${s.id}`)
    // Known gap of aedes 1.2, documented in SECURITY.md: identical filters in
    // one SUBSCRIBE are merged (the last one wins, as [MQTT-3.8.4-3] has it
    // for a repeated subscription) and get one return code, where
    // [MQTT-3.8.4-5] wants one per filter. The SUBACK is written by aedes;
    // fleetgate's layer cannot add codes to it. Checked against the merged list.
    const merged = [...new Map(filters.map((f) => [f.text, f])).values()]
    if (ack.granted.length !== merged.length) { this.fail('[MQTT-3.8.4-5]', `SUBACK has ${ack.granted.length} return codes for ${merged.length} distinct topic filters`); return }
    merged.forEach((f, i) => {
      const g = ack.granted[i]
      const allowed = f.invalid === 'no' && (this.deviceId !== undefined ? f.device : f.anonymous)
      if (!allowed && g !== 0x80) this.fail(f.invalid === 'wildcard' ? '[MQTT-4.7.1-2/3]' : 'ACL subscribe', `filter ${JSON.stringify(f.text.slice(0, 40))} granted ${String(g)} to ${this.deviceId ?? 'an anonymous client'}; expected 0x80`)
      if (allowed && (typeof g !== 'number' || (g !== 0x80 && g > f.qos))) this.fail('§3.8.4 granted QoS', `filter ${JSON.stringify(f.text)} granted ${String(g)} for requested QoS ${f.qos}`)
    })
  }

  private async unsubscribe (s: Extract<Step, { s: 'unsubscribe' }>): Promise<void> {
    const from = this.wire.received.length
    const filters = s.filters.map((f) => resolveFilter(f, this.own, this.foreign))
    this.wire.send(encodeUnsubscribe(s.id, filters.map((f) => f.text)), `UNSUBSCRIBE id=${s.id} [${filters.map((f) => JSON.stringify(f.text.slice(0, 40))).join(', ')}]`)
    const isUnsuback = (p: Packet) => p.cmd === 'unsuback'
    if (s.id === 0) return await this.mustClose(from, isUnsuback, '[MQTT-2.3.1-1]', 'UNSUBSCRIBE with packet id 0')
    if (filters.length === 0) return await this.mustClose(from, isUnsuback, '[MQTT-3.10.3-2]', 'UNSUBSCRIBE without a topic filter')
    if (filters.some((f) => f.invalid === 'empty')) return await this.mustClose(from, isUnsuback, '[MQTT-4.7.3-1]', 'UNSUBSCRIBE with an empty topic filter')
    if (filters.some((f) => f.invalid === 'wildcard')) {
      await this.wire.waitUntil(() => this.wire.closed || this.wire.received.slice(from).some(isUnsuback), REPLY_TIMEOUT_MS)
      return // closing or answering are both acceptable for a malformed wildcard
    }
    await this.reply(from, (p) => p.cmd === 'unsuback' && p.messageId === s.id, `UNSUBACK id=${s.id}`, '[MQTT-3.10.4-4]')
  }

  /** Nothing may reach a device but its own config and commands; nothing under devices/ reaches an anonymous client. */
  private checkIncoming (): void {
    for (const p of this.wire.received) {
      if (p.cmd !== 'publish') continue
      const t = p.topic
      const ok = this.deviceId !== undefined
        ? t === `devices/${this.deviceId}/config` || new RegExp(`^devices/${this.deviceId.replace(/[.]/g, '\\.')}/commands/[^/]+$`).test(t)
        : !t.startsWith('devices/')
      if (!ok) this.fail('ACL forward', `${this.deviceId ?? 'an anonymous client'} received a PUBLISH on ${JSON.stringify(t)}`)
    }
    if (this.wire.parseError) this.fail('broker output', `the broker sent bytes that do not parse as MQTT: ${this.wire.parseError}`)
  }

  /** After the connection is gone and ingest has drained: compare the tables with the model. */
  async checkStorage (): Promise<void> {
    const pool = this.fb.broker.app.pool
    const { rows: tele } = await pool.query<{ device_id: string, m: string | null, n: number }>(
      "SELECT device_id, payload->>'fz' AS m, count(*)::int AS n FROM telemetry WHERE device_id = ANY($1::text[]) GROUP BY 1, 2", [this.devs.all])
    const { rows: dead } = await pool.query<{ head: Buffer }>(
      `SELECT substring(payload from 1 for ${DEAD_LETTER_KEPT_BYTES}) AS head FROM dead_letters WHERE device_id = ANY($1::text[])`, [this.devs.all])
    const stored = new Map<string, { n: number, devices: Set<string> }>()
    for (const r of tele) {
      if (r.m === null || !this.records.has(r.m)) { this.fail('stored', `${r.n} telemetry row(s) of ${r.device_id} with marker ${JSON.stringify(r.m)} that this run never sent as such`); continue }
      const e = stored.get(r.m) ?? { n: 0, devices: new Set<string>() }
      e.n += r.n
      e.devices.add(r.device_id)
      stored.set(r.m, e)
    }
    const deadCount = new Map<string, number>()
    for (const r of dead) {
      for (const m of new Set(Array.from(r.head.toString('latin1').matchAll(/"fz":"(r\d+m\d+)"/g), (x) => x[1]!))) deadCount.set(m, (deadCount.get(m) ?? 0) + 1)
    }
    for (const rec of this.records.values()) {
      const t = stored.get(rec.marker)
      const inTelemetry = t?.n ?? 0
      const inDead = deadCount.get(rec.marker) ?? 0
      const where = `${rec.marker} (${rec.why}): ${inTelemetry} telemetry row(s), ${inDead} dead letter(s)`
      if (t && [...t.devices].some((d) => d !== rec.device)) this.fail('stored', `${where}, stored under ${[...t.devices].join(', ')} instead of ${rec.device}`)
      const failuresBefore = this.failures.length
      switch (rec.fate) {
        case 'forbidden':
          if (inTelemetry + inDead > 0) this.fail('must not be stored', where)
          break
        case 'store':
          if (inDead > 0) this.fail('stored', `${where}; a valid reading was dead-lettered`)
          if (inTelemetry > rec.maxCopies) this.fail(rec.maxCopies === 1 ? 'duplicate' : 'stored', `${where}; at most ${rec.maxCopies} allowed`)
          if (rec.mustExist && inTelemetry === 0) this.fail('ack after commit', `${where}; it was acknowledged (or is a will), so it must be stored`)
          break
        case 'dead':
          if (inTelemetry > 0) this.fail('must not be stored', `${where}; invalid, it must only be dead-lettered`)
          if (inDead > rec.maxCopies) this.fail('duplicate', `${where}; at most ${rec.maxCopies} allowed`)
          if (rec.mustExist && inTelemetry + inDead === 0) this.fail('nothing lost', `${where}; acknowledged, so it must be dead-lettered`)
          break
        case 'store-or-dead':
          if (inTelemetry + inDead > rec.maxCopies) this.fail('duplicate', `${where}; at most ${rec.maxCopies} allowed`)
          if (rec.mustExist && inTelemetry + inDead === 0) this.fail('nothing lost', `${where}; acknowledged, so it must be stored or dead-lettered`)
          break
      }
      if (this.failures.length === failuresBefore) {
        if (rec.fate === 'forbidden') this.verified.forbidden++
        else if (rec.mustExist && inTelemetry > 0) this.verified.stored++
        else if (rec.mustExist && inDead > 0) this.verified.dead++
        if (rec.mustExist && rec.why === 'will') this.verified.wills++
      }
    }
  }
}

async function createRunDevices (fb: FuzzBroker, tag: string, s: Scenario): Promise<RunDevices> {
  const devices = fb.broker.app.devices
  const connects = [s.connect, ...s.steps.filter((x): x is Extract<Step, { s: 'connect' }> => x.s === 'connect').map((x) => x.c)]
  const self = await devices.create({ id: `fz-${tag}-a` })
  const other = await devices.create({ id: `fz-${tag}-b` })
  const out: RunDevices = { self, other, unknownId: `fz-${tag}-nobody`, all: [self.id, other.id] }
  if (connects.some((c) => c.username === 'long')) {
    out.long = await devices.create({ id: `L${tag}-`.padEnd(128, 'x') })
    out.all.push(out.long.id)
  }
  if (connects.some((c) => c.username === 'disabled')) {
    out.disabled = await devices.create({ id: `fz-${tag}-off` })
    await devices.setDisabled(out.disabled.id, true)
    out.all.push(out.disabled.id)
  }
  return out
}

/** Waits until the broker has let go of the run's connection (will published) and ingest has committed. */
async function settle (fb: FuzzBroker): Promise<Failure | undefined> {
  const { aedes } = fb.broker.app.mqtt
  const baseline = fb.watchdog.connected ? 1 : 0
  const deadline = Date.now() + 5000
  while (aedes.connectedClients > baseline) {
    if (Date.now() > deadline) return { rule: 'connection leak', message: `${aedes.connectedClients - baseline} fuzzing connection(s) still registered 5 s after the socket closed` }
    await sleep(5)
  }
  const drained = await withTimeout(fb.broker.app.writer.drain().then(() => true), 10_000)
  if (!drained) return { rule: 'ingest', message: `ingest did not drain within 10 s (queued rows: ${fb.broker.app.queue.rows})` }
  return undefined
}

// ---------------------------------------------------------------- the test

let auth: FuzzBroker
let anon: FuzzBroker
let runNo = 0
/**
 * What is running now and what ran just before, for the uncaught-exception
 * report (a crash skips fast-check's): a crash may come from what the
 * previous connection left behind (a will fires when the broker lets go of it).
 */
interface RunInfo { seed: number, tag: string, scenario: Scenario, run: Run }
let current: RunInfo | undefined
let previous: RunInfo | undefined

test.before(async () => {
  const overrides = {
    MQTT_CONNECT_TIMEOUT_MS: 1000,
    TELEMETRY_MAX_BYTES,
    MQTT_MAX_PACKET_BYTES: MAX_PACKET_BYTES,
    // Covers the latest impossible calendar dates (see impossibleDates()).
    TELEMETRY_RETENTION_DAYS: IMPOSSIBLE.retentionDays,
    // Acks follow commits: a short flush keeps each run short.
    INGEST_FLUSH_MS: 2,
    TELEMETRY_MAX_DEPTH
  }
  const [a, b] = await Promise.all([startTestBroker(overrides), startTestBroker({ ...overrides, MQTT_ALLOW_ANONYMOUS: true })])
  auth = { kind: 'auth', broker: a, watchdog: await Watchdog.start(a, 'auth') }
  anon = { kind: 'anon', broker: b, watchdog: await Watchdog.start(b, 'anon') }
})

test.after.always(async () => {
  for (const fb of [auth, anon]) {
    await fb?.watchdog.stop().catch(() => {})
    await fb?.broker.close()
    await fb?.broker.db.drop()
  }
})

function reportCrash (err: unknown): void {
  const describe = (what: string, r: RunInfo | undefined) => r
    ? [`${what}: run ${r.tag}, seed ${r.seed}`, `  scenario: ${JSON.stringify(r.scenario)}`, '  transcript:', ...r.run.transcript]
    : [`${what}: none`]
  const seed = (current ?? previous)?.seed
  const lines = [
    '',
    '=== MQTT property fuzz: uncaught exception (the broker crashed the process) ===',
    `error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`,
    ...describe('running', current),
    ...describe('previous', previous),
    ...(seed !== undefined ? [`replay: FLEETGATE_FUZZ_SEED=${seed} node --import tsx test/run-tests.ts test/faults/mqtt-property-fuzz.test.ts`] : []),
    ''
  ]
  // Synchronously: the process is about to go.
  writeSync(2, lines.join('\n') + '\n')
}

interface PartStats { runs: number, connected: number, packets: number, bytes: number, verified: Run['verified'], features: Map<string, number> }

async function fuzzPart (t: ExecutionContext, seed: number, seconds: number): Promise<void> {
  const stats: PartStats = { runs: 0, connected: 0, packets: 0, bytes: 0, verified: { forbidden: 0, stored: 0, dead: 0, wills: 0 }, features: new Map() }
  const started = Date.now()
  const discoverUntil = started + seconds * 1000
  let shrinkUntil = Number.POSITIVE_INFINITY
  let fatal = false
  const say = (msg: string) => { t.log(msg); console.log(`[mqtt-property-fuzz] ${msg}`) }
  say(`seed ${seed}, budget ${seconds} s${REPLAY_PATH ? `, replaying path ${REPLAY_PATH}` : ''}${EXCLUDED.size ? `, EXCLUDING ${[...EXCLUDED].join(',')}` : ''}; impossible dates in window: ${IMPOSSIBLE.dates.join(', ')} (retention ${IMPOSSIBLE.retentionDays} days)`)

  const arb = EXCLUDED.size === 0 ? scenarioArb : scenarioArb.filter((s) => ![...scenarioFeatures(s)].some((f) => EXCLUDED.has(f)))
  const property = fc.asyncProperty(arb, async (scenario) => {
    // Our own time budget: an interrupting PreconditionFailure ends fast-check's
    // loop between runs (its time-limit plugin would abandon a run midway).
    if (fatal || Date.now() > (shrinkUntil === Number.POSITIVE_INFINITY ? discoverUntil : shrinkUntil)) throw new fc.PreconditionFailure(true)
    const fb = scenario.broker === 'auth' ? auth : anon
    const tag = `r${++runNo}`
    const runStarted = Date.now()
    const devs = await createRunDevices(fb, tag, scenario)
    const run = new Run(fb, tag, devs)
    current = { seed, tag, scenario, run }
    stats.runs++
    try {
      await run.execute(scenario)
    } finally {
      stats.packets += run.packets
      stats.bytes += run.bytes
    }
    const unsettled = await settle(fb)
    if (unsettled) run.failures.push(unsettled)
    else await run.checkStorage()
    if (run.connected) stats.connected++
    for (const f of run.exercised) stats.features.set(f, (stats.features.get(f) ?? 0) + 1)
    for (const k of ['forbidden', 'stored', 'dead', 'wills'] as const) stats.verified[k] += run.verified[k]
    for (const w of [auth.watchdog, anon.watchdog]) {
      if (w.failure) { run.failures.push({ rule: 'watchdog', message: w.failure }); fatal = true }
    }
    if (unsettled) fatal = true
    previous = current
    current = undefined
    if (VERBOSE) console.log(`--- ${scenario.broker} broker, run ${tag}, ${Date.now() - runStarted} ms\n${run.transcript.join('\n')}`)
    if (run.failures.length > 0) {
      if (shrinkUntil === Number.POSITIVE_INFINITY) shrinkUntil = Date.now() + SHRINK_SECONDS * 1000
      throw new Error(`${run.failures.map((f) => `${f.rule}: ${f.message}`).join('\n')}\n--- ${scenario.broker} broker, run ${tag} (devices ${devs.all.join(', ')}):\n${run.transcript.join('\n')}`)
    }
  })

  const details = await fc.check(property, { seed, ...(REPLAY_PATH ? { path: REPLAY_PATH } : {}), numRuns: Number.MAX_SAFE_INTEGER })
  const elapsed = (Date.now() - started) / 1000
  const top = [...stats.features.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([f, n]) => `${f}=${n}`).join(' ')
  const v = stats.verified
  say(`seed ${seed}: ${stats.runs} runs (${stats.connected} got past CONNECT), ${stats.packets} packets (${(stats.bytes / 1e6).toFixed(1)} MB) in ${elapsed.toFixed(1)} s; ` +
    `markers proven absent ${v.forbidden}, acknowledged and stored ${v.stored}, acknowledged and dead-lettered ${v.dead} (wills stored ${v.wills}); ` +
    `watchdog PUBACKs auth=${auth.watchdog.acked} (max ${auth.watchdog.maxLatencyMs} ms) anon=${anon.watchdog.acked} (max ${anon.watchdog.maxLatencyMs} ms)`)
  t.log(`runs that sent each feature: ${top}`)
  if (details.failed) {
    const replay = `FLEETGATE_FUZZ_SEED=${seed} FLEETGATE_FUZZ_PATH=${details.counterexamplePath ?? ''} node --import tsx test/run-tests.ts test/faults/mqtt-property-fuzz.test.ts`
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
    const message = `${fc.defaultReportMessage(details)}\n\nWhat went wrong (the shrunk counterexample's run):\n${error}\n\nreplay: ${replay}`
    console.error(`[mqtt-property-fuzz] FAILED\n${message}`)
    t.fail(message)
    return
  }
  t.true(stats.runs > 0, 'at least one scenario ran')
  t.falsy(auth.watchdog.failure ?? anon.watchdog.failure)
  // Every reading the watchdogs had acknowledged is in PostgreSQL.
  for (const fb of [auth, anon]) t.true(await fb.watchdog.storedCount(fb.broker) >= fb.watchdog.acked, `${fb.kind} watchdog: acknowledged readings stored`)
}

const parts = REPLAY_PATH ? 1 : Math.ceil(FUZZ_SECONDS / PART_SECONDS)
for (let i = 0; i < parts; i++) {
  const seconds = REPLAY_PATH ? FUZZ_SECONDS : Math.min(PART_SECONDS, FUZZ_SECONDS - i * PART_SECONDS)
  const seed = (BASE_SEED + i) | 0
  test.serial(`hostile MQTT 3.1.1 scenarios never crash the broker, stall the watchdog or store what must be refused (part ${i + 1}/${parts}, seed ${seed})`, async (t) => {
    // It may first wait for the other heavy fault tests (test/helpers/exclusive.ts).
    t.timeout((seconds + SHRINK_SECONDS + 60) * 1000 + 200_000)
    await exclusive('heavy-fault-test', async () => {
      process.prependListener('uncaughtException', reportCrash)
      try { await fuzzPart(t, seed, seconds) } finally { process.off('uncaughtException', reportCrash) }
    })
  })
}
