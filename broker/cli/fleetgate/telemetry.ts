// `fleetgate telemetry …`: stored readings (GET /v1/devices/{id}/telemetry)
// and a live tail of new ones (the event stream, kinds=telemetry).
import type { Command } from 'commander'
import { allPages } from './api-client.js'
import { oneOf, parseSelector, timeOption } from './args.js'
import { createContext } from './context.js'
import { streamToOutput, type FleetEvent } from './events.js'
import { UsageError } from './exit-codes.js'
import { isoSeconds, jsonText, truncate, type Column } from './output.js'
import { pageOptions } from './limits.js'

interface Reading { ts: string, receivedAt: string, payload: unknown }

const COLUMNS: Array<Column<Reading>> = [
  { header: 'TS', value: (r) => r.ts },
  { header: 'RECEIVED', value: (r) => isoSeconds(r.receivedAt) },
  { header: 'PAYLOAD', value: (r) => jsonText(r.payload), max: 100 }
]

interface Bucket { start: string, count: number, min: number, max: number, avg: number }

const BUCKETS = ['10s', '1m', '5m', '15m', '1h', '1d'] as const

const BUCKET_COLUMNS: Array<Column<Bucket>> = [
  { header: 'START', value: (b) => isoSeconds(b.start) },
  { header: 'COUNT', value: (b) => String(b.count) },
  { header: 'MIN', value: (b) => String(b.min) },
  { header: 'MAX', value: (b) => String(b.max) },
  // avg comes with up to 20 decimals: 4 significant ones are enough to read.
  { header: 'AVG', value: (b) => String(Number(b.avg.toPrecision(6))) }
]

export function registerTelemetry (program: Command): void {
  const telemetry = program.command('telemetry')
    .description('Read stored telemetry, or follow it live')
    .addHelpText('after', `
Examples:
  $ fleetgate telemetry get sensor-1 --from 15m
  $ fleetgate telemetry aggregate sensor-1 --field temp --bucket 1h
  $ fleetgate telemetry tail sensor-1 sensor-2`)

  pageOptions(telemetry.command('get')
    .description('A device\'s stored readings in time order')
    .argument('<device>', 'device id')
    .option('--from <time>', 'from this time, inclusive: ISO 8601 or a duration back from now (15m, 2h, 7d)', timeOption('--from'), undefined)
    .option('--to <time>', 'up to this time, exclusive (same forms)', timeOption('--to')), { noun: 'readings', defaultLimit: 100 })
    .addHelpText('after', `
Without --from: the last hour. With -o json the API's page is printed
unchanged, so numbers keep every digit.

Examples:
  $ fleetgate telemetry get sensor-1
  $ fleetgate telemetry get sensor-1 --from 2026-11-29T00:00:00Z --to 2026-11-29T06:00:00Z --all -o ndjson`)
    .action(async (device: string, opts: { from?: string, to?: string, limit: number, cursor?: string, all?: boolean }, cmd: Command) => {
      const from = opts.from ?? new Date(Date.now() - 3_600_000).toISOString()
      if (opts.to !== undefined && Date.parse(from) > Date.parse(opts.to)) throw new UsageError(`--from: ${from} is after --to ${opts.to}`)
      const ctx = createContext(cmd)
      const path = `/v1/devices/${encodeURIComponent(device)}/telemetry`
      const query = { from, to: opts.to, limit: opts.limit }
      if (opts.all) {
        const items: Reading[] = []
        for await (const r of allPages<Reading>(ctx.api, path, query)) items.push(r)
        ctx.out.list(items, COLUMNS)
        return
      }
      const res = await ctx.api.request<{ items: Reading[], nextCursor: string | null }>('GET', path, { query: { ...query, cursor: opts.cursor } })
      if (ctx.out.format === 'json') process.stdout.write(res.text + '\n')
      else ctx.out.list(res.body.items, COLUMNS, res.body.nextCursor)
    })

  telemetry.command('aggregate')
    .alias('agg')
    .description('Count, min, max and avg of a numeric field per time bucket, computed by PostgreSQL')
    .argument('<device>', 'device id')
    .requiredOption('--field <path>', 'the numeric field, a dot path into the reading: temp, env.temp')
    .option('--bucket <width>', `bucket width: ${BUCKETS.join(', ')}`, oneOf('--bucket', BUCKETS), '1m')
    .option('--from <time>', 'from this time: ISO 8601 or a duration back from now (default: 24h before --to)', timeOption('--from'))
    .option('--to <time>', 'up to this time, exclusive (default: now)', timeOption('--to'))
    .addHelpText('after', `
Only buckets holding at least one number are listed. With -o json the API's
answer is printed unchanged (min, max and avg keep PostgreSQL's digits).

Examples:
  $ fleetgate telemetry aggregate sensor-1 --field temp --bucket 1h
  $ fleetgate telemetry agg sensor-1 --field env.humidity --bucket 5m --from 6h`)
    .action(async (device: string, opts: { field: string, bucket: string, from?: string, to?: string }, cmd: Command) => {
      if (opts.from !== undefined && opts.to !== undefined && Date.parse(opts.from) > Date.parse(opts.to)) throw new UsageError(`--from: ${opts.from} is after --to ${opts.to}`)
      const ctx = createContext(cmd)
      const res = await ctx.api.request<{ items: Bucket[] }>('GET', `/v1/devices/${encodeURIComponent(device)}/telemetry/aggregate`, { query: { field: opts.field, bucket: opts.bucket, from: opts.from, to: opts.to } })
      if (ctx.out.format === 'json') process.stdout.write(res.text + '\n')
      else ctx.out.list(res.body.items, BUCKET_COLUMNS)
    })

  telemetry.command('tail')
    .description('Print devices\' readings as they are stored, until Ctrl-C')
    .argument('[devices...]', 'device ids (up to 100)')
    .option('-l, --selector <selector>', 'every device matching this label selector')
    .addHelpText('after', `
Uses the event stream (GET /v1/events?kinds=telemetry&deviceIds=…): each
reading once it is committed. Telemetry is live only: readings stored while
the stream was down are read with \`telemetry get\`. Ctrl-C exits 0.

Examples:
  $ fleetgate telemetry tail sensor-1
  $ fleetgate telemetry tail --selector site=berlin -o ndjson | jq .data.reading.temp`)
    .action(async (devices: string[], opts: { selector?: string }, cmd: Command) => {
      if (devices.length === 0 && opts.selector === undefined) throw new UsageError('telemetry tail: give one or more device ids, or --selector key=value')
      if (devices.length > 100) throw new UsageError(`<devices>: at most 100 devices, got ${devices.length}; use --selector`)
      const selector = opts.selector !== undefined ? parseSelector('--selector', opts.selector) : undefined
      await streamToOutput(cmd, { kinds: 'telemetry', deviceIds: devices.length ? devices.join(',') : undefined, selector }, {
        banner: `following telemetry of ${devices.length ? devices.join(', ') : selector}`,
        line: (e: FleetEvent) => {
          const d = e.data as { ts?: string, reading?: unknown }
          return `${isoSeconds(d.ts ?? e.at)}  ${(e.deviceId ?? '-').padEnd(16)}  ${truncate(JSON.stringify(d.reading ?? d), 160)}`
        }
      })
    })
}
