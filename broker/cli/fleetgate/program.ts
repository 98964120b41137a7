// The `fleetgate` command tree (commander): global connection and output
// options, then one register function per command group, each in its own
// file. --help on every command lists its options, the global ones and
// examples.
import { readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import { registerAudit } from './audit.js'
import { registerCommands } from './commands.js'
import { registerConfig } from './config.js'
import { DEFAULT_URL } from './context.js'
import { registerDeadLetters } from './dead-letters.js'
import { registerDevices } from './devices.js'
import { registerEvents } from './events.js'
import { FORMATS } from './output.js'
import { registerRollouts } from './rollouts.js'
import { registerServer } from './server.js'
import { registerStatus } from './status.js'
import { registerTelemetry } from './telemetry.js'
import { registerTokens } from './tokens.js'

/** package.json's version: two levels up from source (broker/cli/fleetgate/), three from dist/. */
function version (): string {
  for (const rel of ['../../../package.json', '../../../../package.json']) {
    try { return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version } catch {}
  }
  return 'unknown'
}

export const EXIT_CODES_HELP = `
Connection: FLEETGATE_URL (default ${DEFAULT_URL}) and FLEETGATE_TOKEN (or
FLEETGATE_TOKEN_FILE), or --url and --token-file. Prefer those to --token:
a token on the command line is visible to every user in the process list and
lands in shell history.

Output: -o table (default on a terminal), json (default otherwise: the API's
shapes, ISO 8601 times) or ndjson (one JSON value per line).

Exit codes: 0 ok · 1 failed (API error, broker unreachable, a command or
rollout that ended badly) · 2 usage (bad command line) · 3 not found (404) ·
4 auth (401/403: no, wrong or revoked token, or missing scope).
Streams (events, telemetry tail, rollouts watch) stop on Ctrl-C with exit 0.`

/** `writeErr`: where commander writes errors and help-on-error (fleetgate.ts masks secrets there). */
export function buildProgram (writeErr: (text: string) => void = (t) => process.stderr.write(t)): Command {
  const program = new Command('fleetgate')
    .description('Operate a fleetgate broker and its devices through its REST API')
    .version(version(), '-V, --version', 'print the version')
    .addOption(new Option('--url <url>', `broker HTTP API URL (env FLEETGATE_URL, default ${DEFAULT_URL})`))
    .addOption(new Option('--token-file <path>', 'read the operator token from this file (env FLEETGATE_TOKEN_FILE)'))
    .addOption(new Option('--token <token>', 'operator token (env FLEETGATE_TOKEN); visible in the process list: prefer the env or --token-file'))
    .addOption(new Option('-o, --output <format>', 'table, json or ndjson (default: table on a terminal, json otherwise)').choices(FORMATS))
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeErr })
    .addHelpText('after', `${EXIT_CODES_HELP}

Examples:
  $ export FLEETGATE_URL=http://broker:8080 FLEETGATE_TOKEN_FILE=~/.fleetgate-token
  $ fleetgate status
  $ fleetgate devices create sensor-1 --label site=berlin
  $ fleetgate config set sensor-1 '{"intervalSeconds":10}'
  $ fleetgate telemetry tail sensor-1
  $ fleetgate <command> --help`)

  registerStatus(program)
  registerDevices(program)
  registerConfig(program)
  registerCommands(program)
  registerRollouts(program)
  registerTelemetry(program)
  registerEvents(program)
  registerDeadLetters(program)
  registerAudit(program)
  registerTokens(program)
  registerServer(program)
  return program
}
