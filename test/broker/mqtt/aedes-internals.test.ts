// The guard of broker/mqtt/aedes-internals.ts (issue 12): every private
// field of aedes and mqtt-packet that fleetgate uses is where that module
// expects it on the pinned aedes, and no other file reaches for one. An
// aedes upgrade that moves a field fails here, naming it.
import test from 'ava'
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Aedes, type Client } from 'aedes'
import { AEDES_VERSION, assertInternals, missingInternals } from '../../../broker/mqtt/aedes-internals.js'

test('every aedes and mqtt-packet field fleetgate relies on is where aedes-internals.ts expects it', async (t) => {
  const pkg = JSON.parse(await readFile('node_modules/aedes/package.json', 'utf8')) as { version: string }
  const pinned = JSON.parse(await readFile('package.json', 'utf8')) as { dependencies: Record<string, string> }
  t.is(pinned.dependencies.aedes, AEDES_VERSION, 'package.json pins exactly the version aedes-internals.ts was read against')
  t.is(pkg.version, AEDES_VERSION, 'the installed aedes is the pinned one')

  const aedes = await Aedes.createBroker()
  let client: Client | undefined
  const server = createServer((conn) => { client = aedes.handle(conn) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const socket: Socket = connect((server.address() as { port: number }).port, '127.0.0.1')
  try {
    await once(socket, 'connect')
    while (!client) await new Promise((resolve) => setImmediate(resolve))
    t.deepEqual(missingInternals(aedes, client), [])
    t.notThrows(() => assertInternals(aedes, client))
  } finally {
    socket.destroy()
    server.close()
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
  }
})

test('the aedes patch (patches/aedes+2.0.0-beta.1.patch) is applied by the project\'s own install, and its absence fails loudly', async (t) => {
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { scripts: Record<string, string>, dependencies: Record<string, string> }
  t.is(pkg.scripts.postinstall, 'patch-package', 'npm install / npm ci apply patches/ (npm 11 does not run dependencies\' scripts; the root project\'s run)')
  t.truthy(pkg.dependencies['patch-package'], 'a dependency, so the production install (npm ci --omit=dev) applies it too')
  const patch = await readFile('patches/aedes+2.0.0-beta.1.patch', 'utf8')
  for (const file of ['lib/write.js', 'lib/handlers/connect.js', 'lib/handlers/puback.js', 'lib/handlers/pubrec.js', 'lib/client.js']) {
    t.true(patch.includes(`b/node_modules/aedes/${file}`), `the patch covers ${file}`)
    t.true((await readFile(`node_modules/aedes/${file}`, 'utf8')).includes('[fleetgate patch]'), `installed ${file} is patched`)
  }
  const dockerfile = await readFile('Dockerfile', 'utf8')
  const stages = dockerfile.split(/^FROM /m).slice(1)
  for (const stage of stages) {
    const copy = stage.indexOf('COPY patches ./patches')
    const ci = stage.search(/^RUN .*npm ci/m)
    t.true(copy >= 0 && copy < ci, `patches/ is copied before npm ci in the stage ${stage.split('\n')[0]}`)
  }
  // An unpatched client (no outbound flow-control state) is named.
  const aedes = await Aedes.createBroker()
  try {
    let client: Client | undefined
    const server = createServer((conn) => { client = aedes.handle(conn) })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const socket: Socket = connect((server.address() as { port: number }).port, '127.0.0.1')
    await once(socket, 'connect')
    while (!client) await new Promise((resolve) => setImmediate(resolve))
    delete (client as unknown as { _outbound?: unknown })._outbound
    t.regex(t.throws(() => assertInternals(aedes, client))!.message, /client\._outbound: .*the patch was not applied/)
    socket.destroy()
    server.close()
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
  }
})

test('a moved field fails loudly, naming it', async (t) => {
  const aedes = await Aedes.createBroker()
  try {
    const fakeClient = { deliver0 () {}, deliverQoS () {}, subscriptions: {}, duplicates: {}, _disconnected: false, connackSent: false, errored: false, disconnect () {}, req: undefined, disconnectReasonCode: null } as unknown as Client
    const err = t.throws(() => assertInternals(aedes, fakeClient))
    t.regex(err!.message, /client\._parser: expected object, found undefined/)
    t.regex(err!.message, /aedes 2\.0\.0-beta\.1/)
    const renamed = Object.assign(Object.create(Object.getPrototypeOf(aedes)) as object, aedes, { clients: undefined }) as Aedes
    t.regex(t.throws(() => assertInternals(renamed))!.message, /aedes\.clients: expected object, found undefined/)
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
  }
})

// Names only aedes-internals.ts may use. packet-size-limit.ts wraps the
// parser's steps it is handed by parserOf() (typed there).
const PRIVATE = /\b(_parser|_disconnected|deliver0|deliverQoS|_notAuthorized|_requestProblemInformation|connackSent|_cleanStart|_topicAliases|_keepaliveTimer|_serverKeepAlive|_outbound|clearSessionExpiry|clearDelayedWill|publishDiscarded)\b|\.clients\b(?!\.)|(\bclient|\bc)\.subscriptions\b|(?<!\.\.)\.req\b|aedes\.persistence\b|internal\.publish\b/
const PARSER_STEPS = /\b_(parseLength|parseString|newPacket|emitError|pos|list)\b/

async function sources (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await sources(p))
    else if (p.endsWith('.ts')) out.push(p)
  }
  return out
}

test('no file but aedes-internals.ts reaches into aedes or mqtt-packet internals', async (t) => {
  const offenders: string[] = []
  for (const file of [...await sources('broker'), ...await sources('devices'), ...await sources('simulator')]) {
    if (file === join('broker', 'mqtt', 'aedes-internals.ts')) continue
    const lines = (await readFile(file, 'utf8')).split('\n')
    lines.forEach((line, i) => {
      if (/^\s*\/\//.test(line)) return
      if (PRIVATE.test(line) || (PARSER_STEPS.test(line) && file !== join('broker', 'mqtt', 'packet-size-limit.ts'))) offenders.push(`${file}:${i + 1}: ${line.trim()}`)
    })
  }
  t.deepEqual(offenders, [])
})
