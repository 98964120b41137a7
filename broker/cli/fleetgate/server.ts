// `fleetgate serve` and `fleetgate migrate`: the two subcommands that run in
// this process instead of calling the API. serve is `npm start` (it loads
// broker/main.js, which reads the environment and starts the broker); migrate
// is `npm run migrate`. Both are loaded only when chosen, so API commands
// start without loading the broker.
import type { Command } from 'commander'

export function registerServer (program: Command): void {
  program.command('serve')
    .description('Run the broker in this process (same as npm start)')
    .addHelpText('after', `
Configured by environment variables only (README "Configuration"), e.g.
DATABASE_URL, MQTT_PORT, HTTP_PORT, ADMIN_TOKEN, REDIS_URL; without
DATABASE_URL it runs an embedded PostgreSQL under DATA_DIR (./.data).
SIGTERM or Ctrl-C shuts it down in order; a second signal forces exit.

Examples:
  $ fleetgate serve
  $ DATABASE_URL=postgres://fleetgate@db/fleetgate HTTP_PORT=9080 fleetgate serve`)
    .action(async () => {
      await import('../../main.js')
      // The broker runs until its own shutdown (main.ts) ends the process:
      // fleetgate.ts must not take the return for the end of a command.
      await new Promise(() => {})
    })

  program.command('migrate')
    .description('Apply pending database migrations and exit (same as npm run migrate)')
    .option('--init', 'without DATABASE_URL, create a new embedded database in DATA_DIR if it has none')
    .addHelpText('after', `
Uses DATABASE_URL, or the embedded PostgreSQL in DATA_DIR (which must already
hold fleetgate's data unless --init). Says on stderr which database it used.

Examples:
  $ DATABASE_URL=postgres://fleetgate@db/fleetgate fleetgate migrate
  $ fleetgate migrate --init`)
    .action(async (opts: { init?: boolean }) => {
      const { runMigrations } = await import('../run-migrations.js')
      await runMigrations('fleetgate migrate', opts.init ?? false, (message, code = 2) => {
        process.stderr.write(`fleetgate migrate: ${message}\n`)
        process.exit(code)
      })
    })
}
