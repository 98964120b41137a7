// The one configuration schema of the broker process. Only this module reads
// process.env (DESIGN.md, "Engineering habits"); everything else receives a
// validated, typed Config.
import { Type, type Static, type TSchema } from 'typebox'
import { Value } from 'typebox/value'
import { literals } from '../devices/schemas.js'

const Int = (opts: { default: number; minimum: number; maximum: number; description: string }) =>
  Type.Integer(opts)
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description })

export const ConfigSchema = Type.Object({
  DATABASE_URL: Type.Optional(Type.String({
    pattern: '^postgres(ql)?://',
    description: 'PostgreSQL connection URL. Unset: an embedded PostgreSQL runs under DATA_DIR.'
  })),
  DATA_DIR: Type.String({ default: './.data', minLength: 1, description: 'Where the embedded PostgreSQL keeps its data (kept across restarts).' }),
  MQTT_HOST: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Address the MQTT listener binds to.' }),
  MQTT_PORT: Int({ default: 1883, minimum: 0, maximum: 65535, description: 'MQTT (TCP) port; 0 = any free port (logged: msg "listening").' }),
  HTTP_HOST: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Address the HTTP server binds to.' }),
  HTTP_PORT: Int({ default: 8080, minimum: 0, maximum: 65535, description: 'HTTP port (health, metrics); 0 = any free port (logged: msg "listening").' }),
  HTTP_TRUST_PROXY: Bool(false, 'Behind a reverse proxy or Ingress: take the client address from X-Forwarded-For (per-address limits, logs). Never set it when clients reach the port directly.'),
  LOG_LEVEL: literals(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    default: 'info', description: 'pino log level.'
  }),
  MQTT_TCP_ENABLED: Bool(true, 'Plain MQTT over TCP on MQTT_PORT.'),
  MQTT_TLS_ENABLED: Bool(false, 'MQTT over TLS (1.2+) on MQTT_TLS_PORT; needs MQTT_TLS_KEY_FILE and MQTT_TLS_CERT_FILE.'),
  MQTT_TLS_PORT: Int({ default: 8883, minimum: 0, maximum: 65535, description: 'MQTT over TLS port; 0 = any free port (logged: msg "listening").' }),
  MQTT_TLS_KEY_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key of the TLS listener.' })),
  MQTT_TLS_CERT_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM certificate (chain) of the TLS listener.' })),
  MQTT_TLS_CA_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA that signs device client certificates (mutual TLS).' })),
  MQTT_TLS_CLIENT_CERT: Type.Union([Type.Literal('off'), Type.Literal('optional'), Type.Literal('required')], { default: 'off', description: 'Client certificates on the TLS listener: off, optional or required (needs MQTT_TLS_CA_FILE). A certificate must name the client id (CN or SAN).' }),
  MQTT_TLS_PASSWORD_AUTH: Bool(true, 'false: on the TLS listener a valid client certificate alone identifies the device (no password).'),
  MQTT_WS_ENABLED: Bool(true, 'MQTT over WebSocket on MQTT_WS_PATH of the HTTP server (same authentication and ACL).'),
  MQTT_WS_PATH: Type.String({ default: '/mqtt', pattern: '^/[A-Za-z0-9/_-]*$', description: 'HTTP path of the MQTT-over-WebSocket endpoint.' }),
  MQTT_MAX_CONNECTIONS: Int({ default: 18_000, minimum: 1, maximum: 10_000_000, description: 'Most concurrent MQTT connections per process (each listener); beyond, a new one is refused at its CONNECT (v5: CONNACK 0x97), and past a headroom of 5% (16 to 1000) closed at once, unread.' }),
  MQTT_CONNECT_RATE_PER_SECOND: Int({ default: 2000, minimum: 1, maximum: 1_000_000, description: 'CONNECTs (and so authentications) processed per second; the rest wait in order.' }),
  MQTT_CONNECT_QUEUE: Int({ default: 20_000, minimum: 0, maximum: 10_000_000, description: 'CONNECTs that may wait for the rate limit; beyond, the connection is closed (the device retries).' }),
  MQTT_AUTH_FAILURE_MAX_DELAY_MS: Int({ default: 10_000, minimum: 0, maximum: 600_000, description: 'Failed authentications from one address delay its next refusal, doubling from 100 ms up to this.' }),
  DEVICE_PUBLISH_MESSAGES_PER_SECOND: Int({ default: 500, minimum: 1, maximum: 1_000_000, description: 'Publish budget per device; over it the device is slowed down (backpressure).' }),
  DEVICE_PUBLISH_BYTES_PER_SECOND: Int({ default: 2 * 1024 * 1024, minimum: 1024, maximum: 1024 * 1024 * 1024, description: 'Publish budget per device in payload bytes per second.' }),
  DEVICE_THROTTLE_DISCONNECT_MS: Int({ default: 60_000, minimum: 0, maximum: 3_600_000, description: 'A device over its budget this long without a break is disconnected (0: never).' }),
  MQTT_DRAIN_TIMEOUT_MS: Int({ default: 30_000, minimum: 0, maximum: 3_600_000, description: 'A client that does not read its socket this long is disconnected (slow subscribers; 0: never).' }),
  MQTT_LISTEN_BACKLOG: Int({ default: 4096, minimum: 1, maximum: 65535, description: 'TCP accept queue of the MQTT listener (capped by net.core.somaxconn); too small drops SYNs in reconnect storms.' }),
  MQTT_ALLOW_ANONYMOUS: Bool(false, 'Development only: clients without credentials may connect and use topics outside devices/.'),
  MQTT_MAX_PACKET_BYTES: Int({ default: 1024 * 1024, minimum: 1024, maximum: 268_435_455, description: 'Largest MQTT packet, fixed header included (MQTT 5 Maximum Packet Size); a larger one closes the connection as soon as its header is read, before its body is buffered.' }),
  MQTT_CONNECT_TIMEOUT_MS: Int({ default: 10_000, minimum: 100, maximum: 600_000, description: 'Time a new TCP connection has to send CONNECT.' }),
  MQTT_TOPIC_ALIAS_MAXIMUM: Int({ default: 64, minimum: 0, maximum: 65_535, description: 'MQTT 5: highest Topic Alias a client may use on its PUBLISHes (advertised in CONNACK; 0: none).' }),
  MQTT_SESSION_EXPIRY_MAX_SECONDS: Int({ default: 604_800, minimum: 1, maximum: 4_294_967_295, description: 'MQTT 5: longest Session Expiry Interval granted; a longer one (or "never") is capped to this and the CONNACK says so.' }),
  MQTT_SESSION_EXPIRY_DEFAULT_SECONDS: Int({ default: 604_800, minimum: 0, maximum: 4_294_967_295, description: 'MQTT 3.1.1: how long a persistent session (Clean Session 0) outlives its connection (0: for ever); capped by MQTT_SESSION_EXPIRY_MAX_SECONDS.' }),
  MQTT_SERVER_KEEPALIVE_SECONDS: Int({ default: 0, minimum: 0, maximum: 65_535, description: 'MQTT 5: Server Keep Alive given to v5 clients asking for a longer keep alive or none (0: off); 3.1.1 clients keep theirs.' }),
  TELEMETRY_MAX_BYTES: Int({ default: 256 * 1024, minimum: 64, maximum: 64 * 1024 * 1024, description: 'Largest telemetry payload accepted; larger ones are dead-lettered.' }),
  TELEMETRY_MAX_READINGS: Int({ default: 1000, minimum: 1, maximum: 100_000, description: 'Most readings (array elements) in one telemetry message.' }),
  TELEMETRY_MAX_DEPTH: Int({ default: 32, minimum: 1, maximum: 1000, description: 'Deepest nesting of arrays and objects in a telemetry payload (a message\'s own array counts); deeper ones are dead-lettered too_deep.' }),
  TELEMETRY_RETENTION_DAYS: Int({ default: 30, minimum: 1, maximum: 3650, description: 'Days of telemetry kept (daily partitions are dropped after this); older readings are dead-lettered on arrival.' }),
  TELEMETRY_MAX_FUTURE_MS: Int({ default: 3_600_000, minimum: 0, maximum: 2 * 86_400_000, description: 'How far ahead of the broker clock a reading ts may be.' }),
  RETENTION_INTERVAL_MS: Int({ default: 3_600_000, minimum: 1000, maximum: 86_400_000, description: 'How often the retention task runs (one replica at a time).' }),
  HEALTH_MAX_EVENT_LOOP_DELAY_MS: Int({ default: 5000, minimum: 100, maximum: 600_000, description: '/healthz fails when the event loop was stalled longer than this in the last 10 s.' }),
  INGEST_QUEUE_ROWS: Int({ default: 40_000, minimum: 1, maximum: 10_000_000, description: 'Capacity of the ingest queue in readings; when full, publishers wait (backpressure).' }),
  INGEST_QUEUE_BYTES: Int({ default: 64 * 1024 * 1024, minimum: 1024, maximum: 16 * 1024 * 1024 * 1024, description: 'Capacity of the ingest queue in payload bytes (the other bound).' }),
  INGEST_BATCH_ROWS: Int({ default: 4000, minimum: 1, maximum: 100_000, description: 'A batch is written once it holds this many readings…' }),
  INGEST_FLUSH_MS: Int({ default: 10, minimum: 0, maximum: 60_000, description: '…or once its oldest reading has waited this long.' }),
  INGEST_WRITERS: Int({ default: 3, minimum: 1, maximum: 64, description: 'Batches written concurrently, each on its own pool connection.' }),
  INGEST_STALL_MS: Int({ default: 10_000, minimum: 100, maximum: 3_600_000, description: '/readyz reports not ready while a batch has been in flight longer than this (a write stalled by locks or a slow disk).' }),
  INGEST_RETRY_MAX_MS: Int({ default: 5000, minimum: 10, maximum: 600_000, description: 'Upper bound of the exponential backoff between retries of a failed batch.' }),
  DB_POOL_MAX: Int({ default: 10, minimum: 2, maximum: 1000, description: 'PostgreSQL pool size (must exceed INGEST_WRITERS).' }),
  DB_STATEMENT_TIMEOUT_MS: Int({ default: 30_000, minimum: 100, maximum: 3_600_000, description: 'statement_timeout of pool connections.' }),
  AUTH_CACHE_TTL_MS: Int({ default: 30_000, minimum: 0, maximum: 3_600_000, description: 'How long a verified device credential is cached.' }),
  AUTH_CACHE_MAX: Int({ default: 200_000, minimum: 0, maximum: 10_000_000, description: 'Most cached credentials.' }),
  PRESENCE_FLUSH_MS: Int({ default: 1000, minimum: 10, maximum: 60_000, description: 'Presence changes (online, last seen) are written in one batch this often.' }),
  EVENTS_STREAM_BUFFER: Int({ default: 1000, minimum: 1, maximum: 1_000_000, description: 'Events queued per event stream (GET /v1/events) while its client does not read; beyond, they are dropped and counted (the client gets a dropped event with the count).' }),
  EVENTS_MAX_STREAMS_PER_TOKEN: Int({ default: 10, minimum: 1, maximum: 100_000, description: 'Event streams one operator token may hold open on one replica (429 too_many_streams beyond).' }),
  EVENTS_MAX_STREAMS: Int({ default: 200, minimum: 1, maximum: 100_000, description: 'Event streams open on one replica in total (429 too_many_streams beyond).' }),
  EVENTS_HEARTBEAT_MS: Int({ default: 15_000, minimum: 100, maximum: 600_000, description: 'An idle event stream gets a ping comment this often (keeps proxies from closing it).' }),
  EVENT_RETENTION_HOURS: Int({ default: 168, minimum: 1, maximum: 87_600, description: 'Hours stored events (fleet_events, what Last-Event-ID resumes) are kept; older ones are deleted in batches every RETENTION_INTERVAL_MS.' }),
  AUDIT_RETENTION_DAYS: Int({ default: 365, minimum: 1, maximum: 36_500, description: 'Days audit entries (GET /v1/audit) are kept; older ones are deleted in batches every RETENTION_INTERVAL_MS.' }),
  REDIS_URL: Type.Optional(Type.String({
    pattern: '^rediss?://',
    description: 'Cluster mode: replicas share MQTT routing (mqemitter-redis), sessions (aedes-persistence-redis) and control-plane dispatch through this Redis. Unset: one process, all in memory.'
  })),
  CLUSTER_DISPATCH_TIMEOUT_MS: Int({ default: 2000, minimum: 100, maximum: 60_000, description: 'Cluster mode: how long a config or command sent to a device on another replica waits for that replica to answer.' }),
  BROKER_HEARTBEAT_MS: Int({ default: 5000, minimum: 100, maximum: 600_000, description: 'How often each replica records that it is alive (PostgreSQL table brokers).' }),
  BROKER_EXPIRY_MS: Int({ default: 30_000, minimum: 300, maximum: 3_600_000, description: 'A replica silent this long is presumed dead: its devices are set offline (must exceed 2 × BROKER_HEARTBEAT_MS).' }),
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'The first operator token (all scopes). Unset: only API tokens created with `npm run -s token:create` work.' })),
  API_RATE_LIMIT_PER_MINUTE: Int({ default: 6000, minimum: 1, maximum: 10_000_000, description: 'REST requests per minute per operator token (429 beyond).' }),
  API_AUTH_FAILURES_PER_MINUTE: Int({ default: 30, minimum: 1, maximum: 1_000_000, description: 'Failed REST authentications per client address per minute; beyond, 429 at once (before any token look-up).' }),
  COMMAND_MAX_WAIT_SECONDS: Int({ default: 60, minimum: 0, maximum: 3600, description: 'Longest waitSeconds accepted on GET /v1/commands/{id}.' }),
  SHUTDOWN_TIMEOUT_MS: Int({ default: 30_000, minimum: 100, maximum: 600_000, description: 'Graceful shutdown budget; past it the process exits with code 1.' })
})

export type Config = Static<typeof ConfigSchema>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

// Environment values are strings; convert only where the schema says the
// setting is a number or a boolean, so 'MQTT_PORT=abc' fails validation with
// its own name instead of becoming NaN.
function coerce (schema: TSchema, raw: string): unknown {
  const type = (schema as { type?: string }).type
  if (type === 'integer' || type === 'number') return raw.trim() === '' ? raw : Number(raw)
  if (type === 'boolean') {
    if (/^(true|1|yes)$/i.test(raw)) return true
    if (/^(false|0|no)$/i.test(raw)) return false
    return raw
  }
  return raw
}

// Settings whose values are never echoed: a connection URL may carry a
// password, and ADMIN_TOKEN is one.
const SECRET = new Set(['DATABASE_URL', 'ADMIN_TOKEN', 'REDIS_URL'])

/**
 * The strings a pattern of the form `^literal(optional)?…` (no `$`) can start
 * with, e.g. '^postgres(ql)?://' → ['postgres://', 'postgresql://'];
 * undefined for any other pattern.
 */
function patternPrefixes (pattern: string): string[] | undefined {
  if (!pattern.startsWith('^') || pattern.length < 2) return undefined
  const token = /\(([^()\\[\]?*+{}|^$.]+)\)\?|\\([^A-Za-z0-9])|([^()\\[\]?*+{}|^$.])(\?)?/y
  let prefixes = ['']
  for (let i = 1; i < pattern.length; i = token.lastIndex) {
    token.lastIndex = i
    const m = token.exec(pattern)
    if (!m) return undefined
    const [, group, escaped, char, optional] = m
    if (group !== undefined) prefixes = prefixes.flatMap((p) => [p, p + group])
    else if (escaped !== undefined) prefixes = prefixes.map((p) => p + escaped)
    else if (optional) prefixes = prefixes.flatMap((p) => [p, p + char!])
    else prefixes = prefixes.map((p) => p + char!)
  }
  return prefixes
}

/** What a setting accepts, in words, read from its schema. */
export function allowedValues (schema: TSchema): string {
  const s = schema as { type?: string, anyOf?: Array<{ const?: unknown }>, minimum?: number, maximum?: number, minLength?: number, maxLength?: number, pattern?: string, description?: string }
  if (s.anyOf?.every((v) => v.const !== undefined)) return `one of: ${s.anyOf.map((v) => String(v.const)).join(', ')}`
  if (s.type === 'boolean') return 'true or false'
  if (s.type === 'integer' || s.type === 'number') {
    const what = s.type === 'integer' ? 'an integer' : 'a number'
    if (s.minimum !== undefined && s.maximum !== undefined) return `${what} from ${s.minimum} to ${s.maximum}`
    if (s.minimum !== undefined) return `${what} of at least ${s.minimum}`
    if (s.maximum !== undefined) return `${what} of at most ${s.maximum}`
    return what
  }
  if (s.type === 'string') {
    const parts: string[] = []
    if (s.pattern !== undefined) {
      const prefixes = patternPrefixes(s.pattern)
      if (prefixes) parts.push(`${prefixes.every((p) => p.endsWith('://')) ? 'a URL' : 'a value'} starting with ${prefixes.join(' or ')}`)
      else parts.push(`a value matching ${s.pattern}`)
    }
    if (s.minLength !== undefined && s.maxLength !== undefined) parts.push(`${s.minLength} to ${s.maxLength} characters`)
    else if (s.minLength !== undefined) parts.push(s.minLength === 1 ? 'not empty' : `at least ${s.minLength} characters`)
    else if (s.maxLength !== undefined) parts.push(`at most ${s.maxLength} characters`)
    return parts.length > 0 ? parts.join(', ') : 'a string'
  }
  return s.description ?? 'a valid value'
}

/** Validates the environment; throws a ConfigError naming every bad setting, one line each. */
export function loadConfig (env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const input: Record<string, unknown> = {}
  const given: Record<string, string> = {}
  for (const [key, schema] of Object.entries(ConfigSchema.properties)) {
    const raw = env[key]
    if (raw !== undefined && raw !== '') {
      input[key] = coerce(schema, raw)
      given[key] = raw
    }
  }
  for (const key of Object.keys(overrides)) delete given[key]
  Object.assign(input, overrides)
  const withDefaults = Value.Default(ConfigSchema, input) as Record<string, unknown>
  // Each setting is checked on its own, so that every bad one is named at
  // once: Value.Errors stops at TypeBox's maxErrors (8 by default, a
  // process-wide setting, left as it is).
  const required = new Set<string>(ConfigSchema.required ?? [])
  const keys = Object.entries(ConfigSchema.properties as Record<string, TSchema>)
    .filter(([key, schema]) => withDefaults[key] === undefined ? required.has(key) : !Value.Check(schema, withDefaults[key]))
    .map(([key]) => key)
  if (keys.length > 0) {
    // One line per setting: the value as it was given (`MQTT_PORT=abc`, not
    // the NaN it became) and what is allowed, both from the schema, never a
    // hand-kept list.
    const lines = keys.map((key) => {
      const schema = (ConfigSchema.properties as Record<string, TSchema>)[key]!
      const value = SECRET.has(key) ? '[redacted]' : key in given ? JSON.stringify(given[key]) : JSON.stringify(withDefaults[key])
      return `${key}=${value}: expected ${allowedValues(schema)}`
    })
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`)
  }
  const config = withDefaults as Config
  const problems: string[] = []
  if (config.MQTT_TLS_ENABLED && (!config.MQTT_TLS_KEY_FILE || !config.MQTT_TLS_CERT_FILE)) problems.push('MQTT_TLS_KEY_FILE and MQTT_TLS_CERT_FILE: required when MQTT_TLS_ENABLED=true')
  if (config.MQTT_TLS_CLIENT_CERT !== 'off' && !config.MQTT_TLS_CA_FILE) problems.push(`MQTT_TLS_CA_FILE: required when MQTT_TLS_CLIENT_CERT=${config.MQTT_TLS_CLIENT_CERT}`)
  if (!config.MQTT_TLS_PASSWORD_AUTH && config.MQTT_TLS_CLIENT_CERT !== 'required') problems.push('MQTT_TLS_PASSWORD_AUTH=false needs MQTT_TLS_CLIENT_CERT=required (something must identify the device)')
  if (config.BROKER_EXPIRY_MS <= 2 * config.BROKER_HEARTBEAT_MS) problems.push(`BROKER_EXPIRY_MS: must exceed 2 × BROKER_HEARTBEAT_MS (${2 * config.BROKER_HEARTBEAT_MS}), or a live replica's devices may be set offline (got ${config.BROKER_EXPIRY_MS})`)
  if (config.DB_POOL_MAX <= config.INGEST_WRITERS) problems.push(`DB_POOL_MAX: must be greater than INGEST_WRITERS (${config.INGEST_WRITERS}) so the control plane keeps a connection (got ${config.DB_POOL_MAX})`)
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`)
  return config
}

export interface ConfigWarning {
  /** The variable as set in the environment. */
  setting: string
  /** The known setting it most likely meant, if one is close. */
  suggestion?: string
  message: string
}

/** Edit distance (insertions, deletions, substitutions), for "did you mean". */
function editDistance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]!
}

// Variables other software sets in our prefixes: the proxy settings every
// HTTP client reads, and REDIS_PASSWORD, which the Helm chart sets only to
// build REDIS_URL from it ($(REDIS_PASSWORD), helm/fleetgate/templates/_helpers.tpl).
const NOT_OURS = new Set(['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'REDIS_PASSWORD'])
// Kubernetes service links (and Docker links) name a service, which may well
// be "mqtt", "redis" or "broker": MQTT_SERVICE_HOST, REDIS_PORT=tcp://…,
// REDIS_PORT_6379_TCP_ADDR.
const SERVICE_LINK = /_SERVICE_(HOST|PORT)(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?$/

/**
 * Environment variables that look like fleetgate settings but are not one
 * (issue "Configuration errors": a typo such as MQTT_PORTT silently started on
 * the default port): a name in one of the schema's prefixes (MQTT_, INGEST_,
 * …, the first segment of every key), or within a small edit distance of a
 * setting. Each names the closest setting when one is close.
 */
export function unknownSettings (env: NodeJS.ProcessEnv = process.env): ConfigWarning[] {
  const keys = Object.keys(ConfigSchema.properties)
  const known = new Set(keys)
  const prefixes = new Set(keys.map((k) => k.split('_')[0]!))
  const warnings: ConfigWarning[] = []
  for (const [name, value] of Object.entries(env)) {
    const upper = name.toUpperCase()
    if (known.has(name) || NOT_OURS.has(upper) || SERVICE_LINK.test(upper)) continue
    if (/_PORT$/.test(upper) && /^(tcp|udp|sctp):\/\//.test(value ?? '')) continue
    let best: string | undefined
    let distance = Infinity
    for (const key of keys) {
      const d = editDistance(upper, key)
      if (d < distance) { best = key; distance = d }
    }
    // A setting this name is the start of (MQTT_TLS_KEY → MQTT_TLS_KEY_FILE)
    // is meant more often than a nearer one.
    const extended = keys.filter((k) => k.startsWith(upper + '_'))
    if (extended.length === 1 && distance > 1) { best = extended[0]; distance = 1 }
    const close = distance <= (upper.length >= 8 ? 2 : 1)
    if (!close && !prefixes.has(upper.split('_')[0]!)) continue
    const suggestion = close || distance <= Math.floor(upper.length / 4) ? best : undefined
    warnings.push({ setting: name, suggestion, message: `unknown setting ${name} (${suggestion ? `did you mean ${suggestion}?` : 'ignored'})` })
  }
  return warnings
}
