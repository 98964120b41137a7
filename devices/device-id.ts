import { randomBytes } from 'node:crypto'

// A device id is used as one MQTT topic level (devices/{id}/...), as the MQTT
// client id and as the username, so it must not contain '/', '+', '#' or NUL,
// must not start with '$' ([MQTT-4.7.2-1]) and must not be '.' or '..'
// (topic tricks). The same pattern is a CHECK constraint in migrations/001.
export const DEVICE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$'
const DEVICE_ID_RE = new RegExp(DEVICE_ID_PATTERN)

export function isValidDeviceId (id: unknown): id is string {
  return typeof id === 'string' && DEVICE_ID_RE.test(id)
}

/** A server-generated id: 'dev-' and 16 random hex characters. */
export function generateDeviceId (): string {
  return 'dev-' + randomBytes(8).toString('hex')
}
