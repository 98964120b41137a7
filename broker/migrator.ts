// Applies the numbered SQL files in migrations/ in order, each inside a
// transaction, all under one advisory lock so replicas that start together
// migrate exactly once (the others wait, then find nothing left to do).
import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type pg from 'pg'
import type { Logger } from './logger.js'

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url).href.replace('/dist/migrations/', '/migrations/'))

// An arbitrary constant shared by every fleetgate process: pg_advisory_lock(key).
const MIGRATION_LOCK_KEY = 7_336_421_001

export interface Migration { version: number, name: string, sql: string }

export async function loadMigrations (dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+[-_].+\.sql$/.test(f)).sort()
  const out: Migration[] = []
  for (const file of files) {
    const version = Number(file.split(/[-_]/)[0])
    if (out.some((m) => m.version === version)) throw new Error(`two migrations share version ${version}`)
    out.push({ version, name: file, sql: await readFile(join(dir, file), 'utf8') })
  }
  return out
}

/** Returns the versions it applied (empty when the schema was current). */
export async function migrate (pool: pg.Pool, log: Logger, dir = MIGRATIONS_DIR): Promise<number[]> {
  const migrations = await loadMigrations(dir)
  const client = await pool.connect()
  const applied: number[] = []
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
      const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version))
      for (const m of migrations) {
        if (done.has(m.version)) continue
        await client.query('BEGIN')
        try {
          await client.query(m.sql)
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {})
          throw new Error(`migration ${m.name} failed: ${(err as Error).message}`)
        }
        applied.push(m.version)
        log.info({ migration: m.name }, 'migration applied')
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {})
    }
  } catch (err) {
    // The session may still hold the lock or a transaction: do not reuse it.
    client.release(true)
    throw err
  }
  client.release()
  return applied
}
