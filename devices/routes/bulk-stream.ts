// The response of POST /v1/devices/bulk, streamed by hand as NDJSON: each
// chunk's credentials as soon as it commits, waiting for the client to read
// (and stopping if it goes away, so an abandoned request does not go on
// creating devices). fastify's reply cannot do this, so it is hijacked.
import type { FastifyReply, FastifyRequest } from 'fastify'

type Line = { id: string, secret: string } | { id: string, error: string }

export async function streamBulkCreation (req: FastifyRequest, reply: FastifyReply, chunks: AsyncIterable<Line[]>): Promise<void> {
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-request-id': req.id })
  try {
    for await (const chunk of chunks) {
      if (res.destroyed) break
      if (!res.write(chunk.map((r) => JSON.stringify(r)).join('\n') + '\n')) {
        // Whichever comes first; the other listener is removed (one per
        // chunk would pile up on a long, slowly read response).
        await new Promise<void>((resolve) => {
          const done = () => { res.off('drain', done); res.off('close', done); resolve() }
          res.once('drain', done); res.once('close', done)
        })
      }
    }
  } catch (err) {
    // The 200 is already on its way: a failure can only be reported as a
    // last line.
    req.log.error({ err }, 'bulk creation failed part-way')
    res.write(JSON.stringify({ error: 'internal_error', detail: 'creation stopped; the lines above were created', requestId: req.id }) + '\n')
  }
  res.end()
}
