// The exit codes of the `fleetgate` command (README "Operating the fleet"):
// scripts branch on them, so each failure maps to exactly one, whatever the
// command. A usage error is found before any request is sent.

export const EXIT = {
  ok: 0,
  /** The request failed: the API refused it (4xx other than below, 5xx), the broker could not be reached, a command or rollout ended badly. */
  failed: 1,
  /** The command line is wrong: unknown command or option, a bad value, a missing argument. */
  usage: 2,
  /** The API answered 404: no such device, command, rollout or token. */
  notFound: 3,
  /** The API answered 401 or 403: no token, a wrong or revoked one, or one without the scope. */
  auth: 4
} as const

export type ExitCode = typeof EXIT[keyof typeof EXIT]

/** The exit code of an HTTP error status. */
export function exitCodeOfStatus (status: number): ExitCode {
  if (status === 404) return EXIT.notFound
  if (status === 401 || status === 403) return EXIT.auth
  return EXIT.failed
}

/** A failure the command reports as one line on stderr and exits with. */
export class CliError extends Error {
  constructor (message: string, readonly exitCode: ExitCode = EXIT.failed) {
    super(message)
    this.name = 'CliError'
  }
}

/** A command-line mistake, named by its flag or argument: `--selector: expected key=value…, got 'site'`. */
export class UsageError extends CliError {
  constructor (message: string) {
    super(message, EXIT.usage)
    this.name = 'UsageError'
  }
}
