// The API's limits the command checks before sending (README "REST API").
import type { Command } from 'commander'
import { integer } from './args.js'
/** Largest `limit` of a list request. */
export const MAX_LIMIT = 1000

/**
 * A list command's --limit, --cursor and --all, the same in every command:
 * `noun` names what is paged in the help ("devices per page"), `cursor:
 * false` for a list with no cursor.
 */
export function pageOptions (cmd: Command, o: { defaultLimit: number, noun?: string, cursor?: string | false, all?: string }): Command {
  cmd.option('--limit <n>', `${o.noun !== undefined ? `${o.noun} ` : ''}per page (1–${MAX_LIMIT})`, integer('--limit', 1, MAX_LIMIT), o.defaultLimit)
  if (o.cursor !== false) cmd.option('--cursor <cursor>', o.cursor ?? 'the page after this cursor')
  return cmd.option('--all', o.all ?? 'every page')
}
