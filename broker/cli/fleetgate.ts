#!/usr/bin/env node
// `fleetgate`: the one command for operators (issue 13). Every subcommand
// but serve and migrate is a client of the public REST API (and its event
// stream); see broker/cli/fleetgate/. Built once to dist/ (npm install runs
// the build), so a call starts node, not the TypeScript compiler.
//
// This file turns outcomes into exit codes (fleetgate/exit-codes.ts) and
// makes sure no error line carries the token.
import { CommanderError } from 'commander'
import { CliError, EXIT, UsageError } from './fleetgate/exit-codes.js'
import { buildProgram } from './fleetgate/program.js'

/** The secrets this run was given (env and argv), to be masked in any error text. */
function knownSecrets (argv: string[], env: NodeJS.ProcessEnv): string[] {
  const secrets = [env.FLEETGATE_TOKEN?.trim()]
  argv.forEach((a, i) => {
    if (a === '--token') secrets.push(argv[i + 1])
    else if (a.startsWith('--token=')) secrets.push(a.slice('--token='.length))
  })
  return secrets.filter((s): s is string => typeof s === 'string' && s.length >= 4)
}

const secrets = knownSecrets(process.argv, process.env)
const redact = (text: string) => secrets.reduce((t, s) => t.split(s).join('***'), text)

// `fleetgate … | head` closes stdout early: not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(EXIT.ok); throw err })

const program = buildProgram((s) => process.stderr.write(redact(s)))

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander printed its message (or the help) already.
    process.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage
  } else if (err instanceof UsageError) {
    process.stderr.write(redact(`error: ${err.message}`) + '\n(add --help for usage)\n')
    process.exitCode = err.exitCode
  } else if (err instanceof CliError) {
    process.stderr.write(redact(err.message) + '\n')
    process.exitCode = err.exitCode
  } else {
    process.stderr.write(redact(`error: ${(err as Error).stack ?? String(err)}`) + '\n')
    process.exitCode = EXIT.failed
  }
}
// Done: exit once stdout is flushed, instead of waiting for fetch's idle
// keep-alive connection to close (about half a second per call).
process.stdout.write('', () => process.exit())
