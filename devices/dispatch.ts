// How the control plane reaches devices. devices/ never imports the broker:
// the broker implements this interface (locally with aedes; across replicas
// once cluster mode exists) and passes it in.
export interface DeviceDispatch {
  /**
   * Publishes a QoS 1 message to a device's own topic. Resolves true when a
   * connection of that device subscribed to the topic took it, false when the
   * device is not connected or not subscribed (it will get it from
   * PostgreSQL when it subscribes).
   */
  deliver (deviceId: string, topic: string, payload: unknown): Promise<boolean>
  /** Closes the device's connection, if any. */
  disconnect (deviceId: string): Promise<void>
  /**
   * Closes the device's connection and removes its MQTT session wherever it
   * is kept (subscriptions, queued messages, QoS 2 state, will): a device
   * deleted and created again with the same id starts with no session.
   */
  endSession (deviceId: string): Promise<void>
}

/** Cross-process change notifications (PostgreSQL LISTEN/NOTIFY in the broker). */
export interface ChangeFeed {
  on (channel: string, handler: (payload: string) => void): void
}

export const CHANNELS = {
  /** payload: device id — credentials changed (disabled, rotated, deleted). */
  credentials: 'fleetgate_credentials',
  /** payload: command id — the command reached a final status. */
  commandDone: 'fleetgate_command_done'
} as const
