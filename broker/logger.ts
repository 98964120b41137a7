import { pino, type Logger } from 'pino'

export type { Logger }

// Secrets never reach a log line: device secrets, operator tokens and the
// password inside a connection URL are redacted wherever they appear.
export const REDACT_PATHS = [
  'password', 'secret', 'token', 'authorization',
  '*.password', '*.secret', '*.token', '*.authorization',
  'req.headers.authorization', 'headers.authorization'
]

export interface LoggerOptions {
  level: string
  /** Pretty output for humans; JSON (the default) for machines. */
  pretty?: boolean
  destination?: NodeJS.WritableStream
}

export function createLogger (opts: LoggerOptions): Logger {
  const base = {
    level: opts.level,
    base: { service: 'fleetgate' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' }
  }
  if (opts.destination) return pino(base, opts.destination as pino.DestinationStream)
  if (opts.pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } })
  }
  return pino(base)
}
