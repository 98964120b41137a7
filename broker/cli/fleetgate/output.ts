// How `fleetgate` prints results: `--output table` for people (aligned
// columns, long values cut with an ellipsis, relative times), `json` for
// scripts (the API's own shapes, ISO 8601 times), `ndjson` for streams and
// pipes (one JSON value per line). The default is table when stdout is a
// terminal and json otherwise, so `fleetgate devices ls | jq` just works.

export const FORMATS = ['table', 'json', 'ndjson'] as const
export type Format = typeof FORMATS[number]

export interface Column<T> {
  header: string
  value: (item: T) => string
  /** Longest cell; longer values end in "…". */
  max?: number
}

export interface Printer {
  format: Format
  /** A list: a table, `{items, nextCursor}` (json) or one item per line (ndjson). */
  list<T> (items: T[], columns: Array<Column<T>>, nextCursor?: string | null): void
  /** One resource: `key  value` lines (table) or the object (json, ndjson). */
  record (value: object, rows?: Array<[string, string]>): void
  /** One item of a stream (tail, events, watch): a line in table form, else one JSON line. */
  streamItem (value: unknown, line: string): void
  /** A line for people on stderr (hints, progress), kept out of the data. */
  note (text: string): void
}

export function defaultFormat (stdout: { isTTY?: boolean }): Format {
  return stdout.isTTY ? 'table' : 'json'
}

/** Cuts `text` to `max` characters, the last being "…"; newlines become spaces. */
export function truncate (text: string, max: number): string {
  const flat = text.replace(/\s*[\r\n]+\s*/g, ' ')
  return flat.length <= max ? flat : flat.slice(0, Math.max(0, max - 1)) + '…'
}

/** `3s ago`, `5m ago`, `2h ago`, `4d ago`, `in 10m`; the date beyond 30 days; `-` for none. */
export function relativeTime (iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-'
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso
  const s = Math.round((now - t) / 1000)
  const abs = Math.abs(s)
  let span: string
  if (abs < 60) span = `${abs}s`
  else if (abs < 3600) span = `${Math.floor(abs / 60)}m`
  else if (abs < 86_400) span = `${Math.floor(abs / 3600)}h`
  else if (abs < 30 * 86_400) span = `${Math.floor(abs / 86_400)}d`
  else return iso.slice(0, 10)
  return s >= 0 ? `${span} ago` : `in ${span}`
}

/** An ISO time to the second, for tables that list many close times (telemetry, events). */
export function isoSeconds (iso: string | null | undefined): string {
  if (!iso) return '-'
  return iso.replace(/\.\d+Z$/, 'Z')
}

/** Labels as `k=v,k=v`. */
export function labelsText (labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {})
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '-'
}

export function jsonText (value: unknown): string {
  return value === undefined ? '-' : JSON.stringify(value)
}

/** Rows of cells as aligned columns (two spaces apart, no trailing blanks). */
export function table (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

export function createPrinter (format: Format, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Printer {
  return {
    format,
    list (items, columns, nextCursor) {
      if (format === 'json') {
        out.write(JSON.stringify({ items, nextCursor: nextCursor ?? null }, null, 2) + '\n')
        return
      }
      if (format === 'ndjson') {
        for (const item of items) out.write(JSON.stringify(item) + '\n')
      } else if (items.length === 0) {
        err.write('(none)\n')
      } else {
        out.write(table(columns.map((c) => c.header), items.map((item) => columns.map((c) => truncate(c.value(item), c.max ?? 60)))))
      }
      if (nextCursor) err.write(`more: --cursor ${nextCursor} (or --all)\n`)
    },
    record (value, rows) {
      if (format === 'table' && rows) {
        const width = Math.max(...rows.map(([k]) => k.length))
        out.write(rows.map(([k, v]) => `${k.padEnd(width)}  ${truncate(v, 200)}`).join('\n') + '\n')
      } else {
        out.write((format === 'ndjson' ? JSON.stringify(value) : JSON.stringify(value, null, 2)) + '\n')
      }
    },
    streamItem (value, line) {
      out.write((format === 'table' ? line : JSON.stringify(value)) + '\n')
    },
    note (text) {
      err.write(text + '\n')
    }
  }
}
