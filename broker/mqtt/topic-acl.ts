// Who may publish and subscribe where (issue 2, DESIGN.md public contract),
// on the topic contract of devices/topics.ts. Comparisons are exact string
// matches against topics built from the authenticated device id, so tricks
// such as empty levels ('devices//x'), '..' or another device's id never match.
import { DEVICES_PREFIX, parseDeviceDelivery, parseDevicePublish, topics, type DevicePublishKind } from '../../devices/topics.js'

export type TopicClass = DevicePublishKind | 'other'

/** Classifies a device's own publish topic; undefined when the device may not publish there. */
export function devicePublishClass (deviceId: string, topic: string): DevicePublishKind | undefined {
  return parseDevicePublish(deviceId, topic)?.kind
}

/** Topic filters a device may subscribe to: its config, its commands. */
export function deviceMaySubscribe (deviceId: string, filter: string): boolean {
  return filter === topics.configFilter(deviceId) || filter === topics.commandsFilter(deviceId) || filter === topics.allFilter(deviceId)
}

/** Messages a device receives: its own config and commands, never telemetry or results (even under '#'). */
export function deviceMayReceive (deviceId: string, topic: string): boolean {
  return parseDeviceDelivery(deviceId, topic) !== undefined
}

/** Anonymous clients (MQTT_ALLOW_ANONYMOUS): anything outside devices/ and $-topics. */
export function anonymousMayPublish (topic: string): boolean {
  return !topic.startsWith(DEVICES_PREFIX) && topic !== 'devices' && !topic.startsWith('$')
}

export function anonymousMaySubscribe (filter: string): boolean {
  // A filter naming devices/ explicitly is refused; '#' or '+/…' are allowed
  // and device traffic is filtered out on delivery (anonymousMayReceive).
  return !filter.startsWith(DEVICES_PREFIX) && filter !== 'devices' && !filter.startsWith('$')
}

export function anonymousMayReceive (topic: string): boolean {
  return !topic.startsWith(DEVICES_PREFIX)
}

/** For metrics of publishes that are not a device's own: what the topic looks like. */
export function classifyTopic (topic: string): TopicClass {
  if (!topic.startsWith(DEVICES_PREFIX)) return 'other'
  if (topic.endsWith('/telemetry')) return 'telemetry'
  if (topic.endsWith('/config/reported')) return 'config_reported'
  if (topic.endsWith('/result')) return 'command_result'
  return 'other'
}
