// The simulator's flags (issue 4), parsed and validated with messages that
// name the flag. Only the public contract is involved: broker URLs, the REST
// API, topics.
import { parseArgs } from 'node:util'

export interface SimOptions {
  brokers: string[]
  api?: string
  token?: string
  devices: number
  rampPerSecond: number
  intervalMs: number
  jitter: number
  readings: number
  payloadBytes: number
  qos: 0 | 1
  /** MQTT protocol level: 4 (3.1.1) or 5. */
  protocolVersion: 4 | 5
  clean: boolean
  durationSeconds: number
  seed: number
  credentials?: string
  provision: boolean
  idPrefix: string
  labels: Record<string, string>
  commandFailRatio: number
  configFailRatio: number
  commandDelayMs: number
  churnPerMinute: number
  devicesPerProcess: number
  sourceAddresses: number
  report?: string
  verify: boolean
  probeEverySeconds: number
  keepaliveSeconds: number
  quiet: boolean
}

export const USAGE = `usage: npm run simulate -- [flags]

  --broker URL            mqtt://, mqtts:// or ws:// URL; repeat for several (devices spread over them)  [mqtt://127.0.0.1:1883]
  --api URL --token T     control-plane API and operator token: provision devices (bulk), probe config and command round trips, --verify
  --devices N             simulated devices  [100]
  --ramp N                connections opened per second  [500]
  --interval MS           telemetry interval per device  [1000]   (or --rate N messages/s per device)
  --jitter F              0..1, random spread of each interval  [0.1]
  --readings N            readings per message  [1]
  --payload-bytes N       approximate size of one reading  [100]
  --qos 0|1               telemetry QoS  [1]
  --protocol 4|5          MQTT 3.1.1 (4) or MQTT 5: commands answered through the Response Topic with the
                          Correlation Data, telemetry through a topic alias  [4]
  --persistent            persistent sessions (CleanSession=0); default clean
  --duration S            seconds to run after the ramp  [30]
  --seed N                seed for reproducible runs  [1]
  --credentials FILE      NDJSON {id, secret} per line: reused if it exists, written after provisioning
  --no-provision          plain-MQTT mode: anonymous clients with generated ids (any broker)
  --id-prefix P           device id prefix  [sim]
  --label k=v             labels for provisioned devices (repeatable)
  --command-fail-ratio F  share of commands answered "failed"  [0]
  --config-fail-ratio F   share of config versions reported {"status": "failed"} instead of applied  [0]
  --command-delay MS      time a device takes to execute a command  [0]
  --churn F               fraction of devices that drop and reconnect per minute  [0]
  --devices-per-process N at most this many devices per child process (20,000 open files per process)  [15000]
  --source-addresses N    spread connections over 127.0.0.1 … 127.0.0.N (ephemeral ports)  [1]
  --probe-every S         with --api: a config push and a command every S seconds, timed  [5]
  --keepalive S           MQTT keepalive  [60]
  --report FILE           write the summary as JSON
  --verify                after the run, check through the API that every acknowledged reading is stored exactly once
  --quiet                 no status line`

export class OptionError extends Error { override name = 'OptionError' }

function num (flag: string, raw: string | undefined, def: number, min: number, max: number, integer = true): number {
  if (raw === undefined) return def
  const v = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new OptionError(`--${flag} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  }
  return v
}

export function parseSimOptions (argv: string[]): SimOptions {
  let values
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: {
        broker: { type: 'string', multiple: true },
        api: { type: 'string' },
        token: { type: 'string' },
        devices: { type: 'string' },
        ramp: { type: 'string' },
        interval: { type: 'string' },
        rate: { type: 'string' },
        jitter: { type: 'string' },
        readings: { type: 'string' },
        'payload-bytes': { type: 'string' },
        qos: { type: 'string' },
        protocol: { type: 'string' },
        persistent: { type: 'boolean' },
        duration: { type: 'string' },
        seed: { type: 'string' },
        credentials: { type: 'string' },
        'no-provision': { type: 'boolean' },
        'id-prefix': { type: 'string' },
        label: { type: 'string', multiple: true },
        'command-fail-ratio': { type: 'string' },
        'config-fail-ratio': { type: 'string' },
        'command-delay': { type: 'string' },
        churn: { type: 'string' },
        'devices-per-process': { type: 'string' },
        'source-addresses': { type: 'string' },
        report: { type: 'string' },
        verify: { type: 'boolean' },
        'probe-every': { type: 'string' },
        keepalive: { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    }).values
  } catch (err) {
    throw new OptionError((err as Error).message)
  }
  if (values.help) throw new OptionError('help')
  const brokers = values.broker ?? ['mqtt://127.0.0.1:1883']
  for (const b of brokers) {
    let u: URL
    try { u = new URL(b) } catch { throw new OptionError(`--broker ${JSON.stringify(b)} is not a URL`) }
    if (!['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(u.protocol)) throw new OptionError(`--broker must be mqtt://, mqtts://, ws:// or wss://, got ${JSON.stringify(b)}`)
  }
  if (values.api !== undefined) {
    try { if (!/^https?:$/.test(new URL(values.api).protocol)) throw new Error() } catch { throw new OptionError(`--api must be an http(s) URL, got ${JSON.stringify(values.api)}`) }
    if (!values.token) throw new OptionError('--api needs --token (an operator token with write scope)')
  }
  const provision = !values['no-provision']
  if (provision && !values.api && !values.credentials) throw new OptionError('give --api and --token to provision devices, --credentials FILE to reuse them, or --no-provision for anonymous plain MQTT')
  if (values.verify && !values.api) throw new OptionError('--verify reads telemetry back through the API: give --api and --token')
  if (values.verify && !provision) throw new OptionError('--verify needs provisioned devices (not --no-provision)')
  if (values.interval !== undefined && values.rate !== undefined) throw new OptionError('give --interval or --rate, not both')
  const rate = values.rate === undefined ? undefined : num('rate', values.rate, 1, 0.001, 100_000, false)
  const labels: Record<string, string> = {}
  for (const l of values.label ?? []) {
    const m = /^([A-Za-z0-9][A-Za-z0-9_./-]{0,62})=([A-Za-z0-9_.:/@-]{0,128})$/.exec(l)
    if (!m) throw new OptionError(`--label must be key=value, got ${JSON.stringify(l)}`)
    labels[m[1]!] = m[2]!
  }
  const idPrefix = values['id-prefix'] ?? 'sim'
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,100}$/.test(idPrefix)) throw new OptionError(`--id-prefix must be letters, digits, _ . : @ - (start with a letter or digit), got ${JSON.stringify(idPrefix)}`)
  const qos = num('qos', values.qos, 1, 0, 1)
  const protocol = values.protocol ?? '4'
  if (protocol !== '4' && protocol !== '5') throw new OptionError(`--protocol must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got ${JSON.stringify(protocol)}`)
  return {
    brokers,
    api: values.api?.replace(/\/$/, ''),
    token: values.token,
    devices: num('devices', values.devices, 100, 1, 1_000_000),
    rampPerSecond: num('ramp', values.ramp, 500, 1, 100_000),
    intervalMs: rate !== undefined ? 1000 / rate : num('interval', values.interval, 1000, 1, 86_400_000),
    jitter: num('jitter', values.jitter, 0.1, 0, 1, false),
    readings: num('readings', values.readings, 1, 1, 1000),
    payloadBytes: num('payload-bytes', values['payload-bytes'], 100, 20, 1_000_000),
    qos: qos as 0 | 1,
    protocolVersion: protocol === '5' ? 5 : 4,
    clean: !values.persistent,
    durationSeconds: num('duration', values.duration, 30, 1, 30 * 86_400, false),
    seed: num('seed', values.seed, 1, 0, 2 ** 31 - 1),
    credentials: values.credentials,
    provision,
    idPrefix,
    labels,
    commandFailRatio: num('command-fail-ratio', values['command-fail-ratio'], 0, 0, 1, false),
    configFailRatio: num('config-fail-ratio', values['config-fail-ratio'], 0, 0, 1, false),
    commandDelayMs: num('command-delay', values['command-delay'], 0, 0, 600_000),
    churnPerMinute: num('churn', values.churn, 0, 0, 1, false),
    devicesPerProcess: num('devices-per-process', values['devices-per-process'], 15_000, 1, 19_000),
    sourceAddresses: num('source-addresses', values['source-addresses'], 1, 1, 254),
    report: values.report,
    verify: values.verify ?? false,
    probeEverySeconds: num('probe-every', values['probe-every'], 5, 0, 86_400, false),
    keepaliveSeconds: num('keepalive', values.keepalive, 60, 0, 65_535),
    quiet: values.quiet ?? false
  }
}
