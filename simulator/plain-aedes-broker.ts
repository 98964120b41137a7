// The baseline of the ingest benchmark: aedes with its defaults, in-memory,
// storing nothing, on a port given as argv[2]. Same aedes version fleetgate uses.
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const aedes = await Aedes.createBroker()
const server = createServer(aedes.handle)
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const a = server.address()
  process.send?.({ type: 'listening', port: typeof a === 'object' && a ? a.port : 0 })
})
process.on('SIGTERM', () => { server.close(); aedes.close(() => process.exit(0)) })
