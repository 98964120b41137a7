// `npm start`: validate the environment, start everything, and shut down in
// order on SIGTERM/SIGINT (a second signal forces exit, close-with-grace).
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig, unknownSettings } from './config.js'
import { createLogger } from './logger.js'
import { startApp } from './app.js'
import { isAbandonedRedisCommand } from './fleet/cluster-backend.js'

// A typo (MQTT_PORTT) would otherwise start silently on the default.
const unknown = unknownSettings()
let config
try {
  config = loadConfig()
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`fleetgate: ${err.message}\n`)
    for (const w of unknown) process.stderr.write(`fleetgate: ${w.message}\n`)
    process.exit(2)
  }
  throw err
}

const log = createLogger({ level: config.LOG_LEVEL, pretty: process.stdout.isTTY })
for (const w of unknown) log.warn({ setting: w.setting, suggestion: w.suggestion }, w.message)
const app = await startApp(config, log).catch((err: unknown) => {
  log.fatal({ err }, 'start-up failed')
  process.exit(1)
})
log.info({ mqttPort: app.mqttPort, httpPort: app.httpPort, brokerId: app.brokerId }, 'fleetgate ready')

// An unhandled rejection shuts the process down like an uncaught exception
// (rethrown as one), except the abandoned Redis commands of a closed
// connection (cluster-backend.ts), which are only logged.
process.on('unhandledRejection', (reason) => {
  if (isAbandonedRedisCommand(reason)) {
    log.warn({ err: { message: (reason as Error).message } }, 'a Redis command was abandoned (connection closed)')
    return
  }
  setImmediate(() => { throw reason })
})

// SIGUSR2 is not a stop signal here: close-with-grace treats it as one, but it
// is the signal of Node's --heapsnapshot-signal=SIGUSR2, and a heap snapshot
// of a live broker must not shut it down (README, Operations).
closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS, logger: log, skip: ['unhandledRejection', 'SIGUSR2'] }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'fatal error, shutting down')
  else log.info({ signal }, 'shutting down')
  await app.close()
  log.info('shutdown complete')
})
