// The MQTT listeners (issue 2, issue 7): plain TCP, TLS (optionally mutual)
// and WebSocket on a path of the HTTP server. Each hands its connections to
// the same `handle` (connection.ts), so protocol, authentication and ACL are
// the same on every transport.
import { createServer, type Server } from 'node:net'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import type { Server as HttpServer, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { once } from 'node:events'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Logger } from '../logger.js'
import type { Metrics } from '../metrics.js'

export interface TlsListenerOptions {
  port: number
  key: Buffer
  cert: Buffer
  ca?: Buffer
  clientCert: 'off' | 'optional' | 'required'
  /** false: a verified client certificate alone identifies the device. */
  passwordAuth: boolean
}

export interface ListenerOptions {
  host: string
  port: number
  /** Plain TCP listener (default on). */
  tcp?: boolean
  tls?: TlsListenerOptions
  listenBacklog?: number
  /**
   * Concurrent connections per listener. Beyond it, a new connection is
   * still read up to its CONNECT, to be refused with a CONNACK (v5: 0x97
   * quota exceeded), as long as there are fewer than overLimitHeadroom()
   * such; beyond that it is closed at once, unread.
   */
  maxConnections?: number
  maxPacketBytes: number
  handle (conn: Duplex, req?: IncomingMessage, overLimit?: boolean): void
  metrics: Metrics
  log: Logger
}

export interface Listeners {
  /** TCP port (0 when the TCP listener is off). */
  readonly port: number
  readonly tlsPort?: number
  readonly listening: boolean
  attachWebSocket (server: HttpServer, path: string): void
  /** Stops accepting new connections; existing ones stay. */
  stopAccepting (): void
}

/** CN and subject alternative names (DNS, URI) of a verified peer certificate. */
export function certificateNames (socket: TLSSocket): string[] | undefined {
  if (!socket.authorized) return undefined
  const cert = socket.getPeerCertificate()
  if (!cert || Object.keys(cert).length === 0) return undefined
  const names: string[] = []
  const cn = cert.subject?.CN
  if (typeof cn === 'string') names.push(cn)
  else if (Array.isArray(cn)) names.push(...cn)
  for (const part of (cert.subjectaltname ?? '').split(',')) {
    const m = /^\s*(DNS|URI):(.+)$/.exec(part)
    if (m) names.push(m[2]!.trim())
  }
  return names
}

/**
 * Connections over MQTT_MAX_CONNECTIONS that are read up to their CONNECT to
 * be refused with a reason code: 5% of the limit, 16 to 1000. Each holds a
 * socket until its CONNECT arrives (or MQTT_CONNECT_TIMEOUT_MS passes), so
 * they are bounded too; past them the kernel's accept is all there is, and
 * a socket closed unread is the only answer (no CONNECT read, no protocol
 * version known, no CONNACK possible).
 */
export function overLimitHeadroom (maxConnections: number): number {
  return Math.min(1000, Math.max(16, Math.ceil(maxConnections * 0.05)))
}

/**
 * The logger of the 'listening' lines: at info, and written even when
 * LOG_LEVEL hides info (not when it is 'silent'). With a port of 0 the line is
 * the only place the bound port shows; test harnesses and operators read it.
 */
function listeningLog (log: Logger): Logger {
  return log.isLevelEnabled('info') || log.level === 'silent' ? log : log.child({}, { level: 'info' })
}

export async function startListeners (opts: ListenerOptions): Promise<Listeners> {
  const { metrics, log, handle } = opts
  const announce = listeningLog(log)
  const servers: Server[] = []
  // A deep accept queue: with Node's default (511) a reconnect storm
  // overflows it and the kernel drops SYNs, turning into seconds of
  // retransmission delay per device.
  const listen = async (server: Server, port: number, name: 'mqtt-tcp' | 'mqtt-tls') => {
    if (opts.maxConnections !== undefined) {
      // Beyond the headroom, new connections are closed at once (the
      // kernel's accept never turns into an MQTT client, so no CONNACK can
      // be sent).
      server.maxConnections = opts.maxConnections + overLimitHeadroom(opts.maxConnections)
      server.on('drop', () => metrics.connackRefusals.inc({ code: 'none', reason: 'max_connections' }))
    }
    server.listen({ port, host: opts.host, backlog: opts.listenBacklog ?? 4096 })
    await once(server, 'listening')
    servers.push(server)
    const address = server.address()
    const actual = typeof address === 'object' && address ? address.port : port
    // One stable line per listener, with the port actually bound (0 = any free port).
    announce.info({ listener: name, address: typeof address === 'object' && address ? address.address : opts.host, port: actual }, 'listening')
    return actual
  }
  // Open connections of one listener: past maxConnections, each new one is
  // handed over marked, to be refused at its CONNECT (authenticate.ts).
  const counted = () => {
    let open = 0
    return (c: Duplex) => {
      open++
      c.once('close', () => { open-- })
      handle(c, undefined, opts.maxConnections !== undefined && open > opts.maxConnections)
    }
  }
  // Nagle's algorithm stays on for accepted sockets: TCP_NODELAY is set only
  // on connections that are sent configs or commands (device-dispatch.ts;
  // issue 15), as on every one it cost broker CPU per telemetry message.
  const port = opts.tcp === false ? 0 : await listen(createServer(counted()), opts.port, 'mqtt-tcp')
  let tlsPort: number | undefined
  if (opts.tls) {
    const t = opts.tls
    const tlsServer = createTlsServer({
      key: t.key,
      cert: t.cert,
      ...(t.ca ? { ca: t.ca } : {}),
      minVersion: 'TLSv1.2',
      requestCert: t.clientCert !== 'off',
      // 'required': the handshake fails without a certificate the CA signed.
      rejectUnauthorized: t.clientCert === 'required'
    }, counted())
    tlsServer.on('tlsClientError', (err) => {
      metrics.connackRefusals.inc({ code: 'tls', reason: 'tls_handshake_failed' })
      log.info({ err: err.message }, 'TLS handshake refused')
    })
    tlsPort = await listen(tlsServer as unknown as Server, t.port, 'mqtt-tls')
  }
  let listening = true
  let wss: WebSocketServer | undefined

  return {
    port,
    tlsPort,
    get listening () { return listening },
    attachWebSocket (server, path) {
      // A frame may carry several packets, each bounded on its own; this
      // only bounds what one frame can make the server buffer.
      wss = new WebSocketServer({ noServer: true, maxPayload: Math.max(2 * opts.maxPacketBytes, 1024 * 1024) })
      const ws = wss
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        if (!listening || (req.url ?? '').split('?')[0] !== path) { socket.destroy(); return }
        ws.handleUpgrade(req, socket, head, (client) => {
          const stream = createWebSocketStream(client)
          stream.on('error', () => stream.destroy())
          handle(stream, req)
        })
      })
      // On the HTTP server's port (its own 'listening' line says which).
      const address = server.address()
      announce.info({ listener: 'mqtt-ws', ...(typeof address === 'object' && address ? { address: address.address, port: address.port } : {}), path }, 'listening')
    },
    stopAccepting () {
      if (!listening) return
      listening = false
      // server.close() stops accepting at once; its callback fires only when
      // every connection has ended, which closing aedes takes care of.
      for (const s of servers) s.close(() => {})
      wss?.close()
    }
  }
}
