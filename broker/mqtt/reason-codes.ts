// MQTT 5 reason codes fleetgate sends (MQTT 5.0 section 2.4), and the
// MQTT 3.1.1 CONNACK return codes they correspond to (section 3.2.2.3).
// The README's reason-code tables list where each is used.

/** MQTT 3.1.1 CONNACK return codes. */
export const RETURN_CODE = { IDENTIFIER_REJECTED: 2, SERVER_UNAVAILABLE: 3, BAD_CREDENTIALS: 4, NOT_AUTHORIZED: 5 } as const

/** MQTT 5 reason codes. */
export const REASON = {
  SUCCESS: 0x00,
  NORMAL_DISCONNECTION: 0x00,
  UNSPECIFIED_ERROR: 0x80,
  PROTOCOL_ERROR: 0x82,
  CLIENT_IDENTIFIER_NOT_VALID: 0x85,
  BAD_USERNAME_OR_PASSWORD: 0x86,
  NOT_AUTHORIZED: 0x87,
  SERVER_UNAVAILABLE: 0x88,
  SERVER_BUSY: 0x89,
  BANNED: 0x8A,
  SERVER_SHUTTING_DOWN: 0x8B,
  KEEP_ALIVE_TIMEOUT: 0x8D,
  SESSION_TAKEN_OVER: 0x8E,
  RECEIVE_MAXIMUM_EXCEEDED: 0x93,
  TOPIC_ALIAS_INVALID: 0x94,
  PACKET_TOO_LARGE: 0x95,
  QUOTA_EXCEEDED: 0x97,
  ADMINISTRATIVE_ACTION: 0x98,
  PAYLOAD_FORMAT_INVALID: 0x99
} as const

/**
 * The broker's DISCONNECT reason code for each `reason` label of
 * fleetgate_mqtt_disconnects_total that the broker itself causes (v5
 * clients are sent it; presence and metrics use the same label).
 */
export const DISCONNECT_REASON: Record<string, number> = {
  taken_over: REASON.SESSION_TAKEN_OVER,
  server_shutdown: REASON.SERVER_SHUTTING_DOWN,
  admin_action: REASON.ADMINISTRATIVE_ACTION,
  rate_limited: REASON.QUOTA_EXCEEDED,
  slow_consumer: REASON.QUOTA_EXCEEDED,
  packet_too_large: REASON.PACKET_TOO_LARGE,
  keepalive_timeout: REASON.KEEP_ALIVE_TIMEOUT,
  receive_maximum_exceeded: REASON.RECEIVE_MAXIMUM_EXCEEDED,
  topic_alias_invalid: REASON.TOPIC_ALIAS_INVALID
}
