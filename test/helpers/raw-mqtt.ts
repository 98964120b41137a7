// Speaks MQTT byte by byte over a real socket, for what a well-behaved client
// library refuses to send (spec edge cases, malformed input).
import { connect } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

/**
 * Sends the packets (or raw buffers) and collects what the broker answers
 * until it closes the connection or `untilPackets` arrived or `timeoutMs` passes.
 */
export async function rawExchange (port: number, send: Array<Partial<Packet> | Buffer>, { untilPackets = 1, timeoutMs = 5000 } = {}): Promise<Packet[]> {
  const socket = connect(port, '127.0.0.1')
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const received: Packet[] = []
  return await new Promise((resolve, reject) => {
    const finish = () => { clearTimeout(timer); socket.destroy(); resolve(received) }
    const timer = setTimeout(finish, timeoutMs)
    parser.on('packet', (p) => { received.push(p); if (received.length >= untilPackets) finish() })
    parser.on('error', reject)
    socket.on('data', (d) => parser.parse(d))
    socket.on('close', finish)
    socket.on('error', () => finish())
    socket.on('connect', () => {
      for (const p of send) socket.write(Buffer.isBuffer(p) ? p : mqttPacket.generate(p as Packet))
    })
  })
}

/**
 * A raw MQTT connection at `version` that records every packet the broker
 * sends and whether it closed; `send` encodes a packet, `write` sends bytes.
 */
export function rawConnection (port: number, version: 4 | 5 = 5) {
  const socket = connect(port, '127.0.0.1')
  const parser = mqttPacket.parser({ protocolVersion: version })
  const packets: Packet[] = []
  let closed = false
  parser.on('packet', (p) => packets.push(p))
  socket.on('data', (d) => parser.parse(d))
  socket.on('error', () => {})
  socket.on('close', () => { closed = true })
  const send = (p: Partial<Packet>) => socket.write(mqttPacket.generate(p as Packet, { protocolVersion: version }))
  return { packets, send, write: (b: Buffer) => socket.write(b), get closed () { return closed }, close: () => socket.destroy(), of: (cmd: string) => packets.filter((p) => p.cmd === cmd) as any[] } // eslint-disable-line @typescript-eslint/no-explicit-any
}
