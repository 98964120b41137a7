// Who may publish and subscribe where (issue 2, DESIGN.md public contract).
// Comparisons are exact string matches against topics built from the
// authenticated device id, so tricks such as empty levels ('devices//x'),
// '..' or another device's id never match.

export type TopicClass = 'telemetry' | 'config_reported' | 'command_result' | 'other'

const PREFIX = 'devices/'

/** Classifies a device's own publish topic; undefined when the device may not publish there. */
export function devicePublishClass (deviceId: string, topic: string): TopicClass | undefined {
  if (!topic.startsWith(PREFIX) || !topic.startsWith(deviceId + '/', PREFIX.length)) return undefined
  const rest = topic.slice(PREFIX.length + deviceId.length + 1)
  if (rest === 'telemetry') return 'telemetry'
  if (rest === 'config/reported') return 'config_reported'
  // commands/{commandId}/result with exactly one non-empty commandId level
  if (rest.startsWith('commands/') && rest.endsWith('/result')) {
    const commandId = rest.slice('commands/'.length, -'/result'.length)
    if (commandId.length > 0 && !commandId.includes('/')) return 'command_result'
  }
  return undefined
}

/** Topic filters a device may subscribe to: its config, its commands. */
export function deviceMaySubscribe (deviceId: string, filter: string): boolean {
  const own = PREFIX + deviceId + '/'
  return filter === own + 'config' || filter === own + 'commands/+' || filter === own + '#'
}

/** Messages a device receives: its own config and commands, never telemetry or results (even under '#'). */
export function deviceMayReceive (deviceId: string, topic: string): boolean {
  const own = PREFIX + deviceId + '/'
  if (!topic.startsWith(own)) return false
  const rest = topic.slice(own.length)
  if (rest === 'config') return true
  if (!rest.startsWith('commands/')) return false
  const commandId = rest.slice('commands/'.length)
  return commandId.length > 0 && !commandId.includes('/')
}

/** Anonymous clients (MQTT_ALLOW_ANONYMOUS): anything outside devices/ and $-topics. */
export function anonymousMayPublish (topic: string): boolean {
  return !topic.startsWith(PREFIX) && topic !== 'devices' && !topic.startsWith('$')
}

export function anonymousMaySubscribe (filter: string): boolean {
  // A filter naming devices/ explicitly is refused; '#' or '+/…' are allowed
  // and device traffic is filtered out on delivery (anonymousMayReceive).
  return !filter.startsWith(PREFIX) && filter !== 'devices' && !filter.startsWith('$')
}

export function anonymousMayReceive (topic: string): boolean {
  return !topic.startsWith(PREFIX)
}

export function classifyTopic (topic: string): TopicClass {
  if (!topic.startsWith(PREFIX)) return 'other'
  if (topic.endsWith('/telemetry')) return 'telemetry'
  if (topic.endsWith('/config/reported')) return 'config_reported'
  if (topic.endsWith('/result')) return 'command_result'
  return 'other'
}
