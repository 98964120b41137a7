// `fleetgate tokens …`: operator API tokens (/v1/tokens, admin). A new
// token's value is printed once, on stdout.
import type { Command } from 'commander'
import { collect } from './args.js'
import { createContext } from './context.js'
import { UsageError } from './exit-codes.js'
import { relativeTime, type Column } from './output.js'

interface Token { id: string, name: string, scopes: string[], createdAt: string, revokedAt: string | null, lastUsedAt: string | null }

const SCOPES = ['read', 'write', 'admin']

const COLUMNS: Array<Column<Token>> = [
  { header: 'ID', value: (t) => t.id, max: 36 },
  { header: 'NAME', value: (t) => t.name, max: 30 },
  { header: 'SCOPES', value: (t) => t.scopes.join(',') },
  { header: 'CREATED', value: (t) => relativeTime(t.createdAt) },
  { header: 'LAST USED', value: (t) => relativeTime(t.lastUsedAt) },
  { header: 'REVOKED', value: (t) => t.revokedAt ? relativeTime(t.revokedAt) : '-' }
]

export function registerTokens (program: Command): void {
  const tokens = program.command('tokens')
    .description('Operator API tokens (admin token needed)')
    .addHelpText('after', `
Scopes: read ⊂ write ⊂ admin.

Examples:
  $ fleetgate tokens create --name ci --scope write > ci-token.json
  $ fleetgate tokens ls
  $ fleetgate tokens revoke 6d1e…`)

  tokens.command('create')
    .description('Create a token and print it, once')
    .requiredOption('--name <name>', 'what the token is for (shown in the audit trail)')
    .option('--scope <scope>', 'read, write or admin (repeatable; default read)', collect)
    .addHelpText('after', `
The token is printed once, on stdout; the broker keeps only its SHA-256.
Keep it out of shell history and process lists: give it to fleetgate with
FLEETGATE_TOKEN or --token-file.

Examples:
  $ fleetgate tokens create --name grafana
  $ fleetgate tokens create --name deploy --scope write -o json | jq -r .token > deploy.token`)
    .action(async (opts: { name: string, scope?: string[] }, cmd: Command) => {
      const scopes = [...new Set(opts.scope ?? ['read'])]
      for (const s of scopes) if (!SCOPES.includes(s)) throw new UsageError(`--scope: expected one of ${SCOPES.join(', ')}, got '${s}'`)
      const ctx = createContext(cmd)
      const t = (await ctx.api.request<Token & { token: string }>('POST', '/v1/tokens', { body: { name: opts.name, scopes } })).body
      ctx.out.record(t, [['id', t.id], ['name', t.name], ['scopes', t.scopes.join(',')], ['token', t.token]])
      if (ctx.out.format === 'table') ctx.out.note('The token is shown only now: store it (e.g. in a file for --token-file).')
    })

  tokens.command('ls')
    .alias('list')
    .description('List tokens (their values are never shown again)')
    .addHelpText('after', '\nExample:\n  $ fleetgate tokens ls')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      ctx.out.list((await ctx.api.request<{ items: Token[] }>('GET', '/v1/tokens')).body.items, COLUMNS)
    })

  tokens.command('revoke')
    .description('Revoke a token; requests with it are refused at once')
    .argument('<id>', 'token id (from tokens ls)')
    .addHelpText('after', '\nExample:\n  $ fleetgate tokens revoke 6d1e…')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = createContext(cmd)
      await ctx.api.request('DELETE', `/v1/tokens/${encodeURIComponent(id)}`)
      ctx.out.record({ id, revoked: true }, [['revoked', id]])
    })
}
