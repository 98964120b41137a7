// The MQTT topic contract of a device (DESIGN.md, "Public contract"), spelled
// once: the broker, the control plane and the simulator build and read
// device topics through these functions. (Here in devices/ because devices/
// imports nothing of broker/, and the simulator may use the public contract.)
//
// | topic                                   | direction       |
// |-----------------------------------------|-----------------|
// | devices/{id}/telemetry                  | device → broker |
// | devices/{id}/config                     | broker → device |
// | devices/{id}/config/reported            | device → broker |
// | devices/{id}/commands/{commandId}       | broker → device |
// | devices/{id}/commands/{commandId}/result| device → broker |
//
// A device id is always one safe topic level (device-id.ts), so these are
// plain concatenations; comparisons against them are exact string matches,
// so tricks such as empty levels ('devices//x'), '..' or another device's
// id never match.

export const DEVICES_PREFIX = 'devices/'

export const topics = {
  telemetry: (deviceId: string) => `${DEVICES_PREFIX}${deviceId}/telemetry`,
  config: (deviceId: string) => `${DEVICES_PREFIX}${deviceId}/config`,
  configReported: (deviceId: string) => `${DEVICES_PREFIX}${deviceId}/config/reported`,
  command: (deviceId: string, commandId: string) => `${DEVICES_PREFIX}${deviceId}/commands/${commandId}`,
  commandResult: (deviceId: string, commandId: string) => `${DEVICES_PREFIX}${deviceId}/commands/${commandId}/result`,
  /** The filters a device may subscribe to. */
  configFilter: (deviceId: string) => `${DEVICES_PREFIX}${deviceId}/config`,
  commandsFilter: (deviceId: string) => `${DEVICES_PREFIX}${deviceId}/commands/+`,
  allFilter: (deviceId: string) => `${DEVICES_PREFIX}${deviceId}/#`
} as const

/** What a device may publish; undefined for any other topic. */
export type DevicePublishKind = 'telemetry' | 'config_reported' | 'command_result'

export interface DeviceTopic {
  kind: DevicePublishKind
  /** For command_result: the command id (one non-empty level). */
  commandId?: string
}

// Shared answers: parseDevicePublish runs for every message a device sends.
const TELEMETRY_TOPIC: DeviceTopic = Object.freeze({ kind: 'telemetry' })
const CONFIG_REPORTED_TOPIC: DeviceTopic = Object.freeze({ kind: 'config_reported' })
const TELEMETRY_SUFFIX = '/telemetry'

/** Parses one of the device's own publish topics; undefined when the device may not publish there. */
export function parseDevicePublish (deviceId: string, topic: string): DeviceTopic | undefined {
  if (!topic.startsWith(DEVICES_PREFIX) || !topic.startsWith(deviceId, DEVICES_PREFIX.length)) return undefined
  const own = DEVICES_PREFIX.length + deviceId.length
  // Telemetry, the common case, without slicing the topic.
  if (topic.length === own + TELEMETRY_SUFFIX.length && topic.endsWith(TELEMETRY_SUFFIX)) return TELEMETRY_TOPIC
  if (topic.charCodeAt(own) !== 0x2f) return undefined // '/'
  const rest = topic.slice(own + 1)
  if (rest === 'config/reported') return CONFIG_REPORTED_TOPIC
  // commands/{commandId}/result with exactly one non-empty commandId level
  if (rest.startsWith('commands/') && rest.endsWith('/result')) {
    const commandId = rest.slice('commands/'.length, -'/result'.length)
    if (commandId.length > 0 && !commandId.includes('/')) return { kind: 'command_result', commandId }
  }
  return undefined
}

/** The device's own config or commands/{commandId} topic: what it may receive. */
export function parseDeviceDelivery (deviceId: string, topic: string): { kind: 'config' } | { kind: 'command', commandId: string } | undefined {
  const own = DEVICES_PREFIX + deviceId + '/'
  if (!topic.startsWith(own)) return undefined
  const rest = topic.slice(own.length)
  if (rest === 'config') return { kind: 'config' }
  if (!rest.startsWith('commands/')) return undefined
  const commandId = rest.slice('commands/'.length)
  return commandId.length > 0 && !commandId.includes('/') ? { kind: 'command', commandId } : undefined
}

/** A subscription filter that delivers the device's config. */
export function coversConfig (deviceId: string, filter: string): boolean {
  return filter === topics.configFilter(deviceId) || filter === topics.allFilter(deviceId)
}

/** A subscription filter that delivers the device's commands. */
export function coversCommands (deviceId: string, filter: string): boolean {
  return filter === topics.commandsFilter(deviceId) || filter === topics.allFilter(deviceId)
}
