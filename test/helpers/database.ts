import { randomBytes } from 'node:crypto'
import pg from 'pg'

export const TEMPLATE_DB = 'fleetgate_template'

export function withDatabaseName (url: string, name: string): string {
  const u = new URL(url)
  u.pathname = '/' + name
  return u.toString()
}

function adminUrl (): string {
  const url = process.env.FLEETGATE_TEST_ADMIN_URL
  if (!url) throw new Error('run the tests with `npm test` (it starts PostgreSQL and sets FLEETGATE_TEST_ADMIN_URL)')
  return url
}

export interface TestDatabase { url: string, name: string, drop (): Promise<void> }

/** A fresh database cloned from the migrated template: one per test file (or per test). */
export async function createTestDatabase (): Promise<TestDatabase> {
  const name = 'fg_test_' + randomBytes(6).toString('hex')
  const admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DB}`)
  } finally { await admin.end() }
  return {
    name,
    url: withDatabaseName(adminUrl(), name),
    async drop () {
      const c = new pg.Client({ connectionString: adminUrl() })
      await c.connect()
      try { await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) } finally { await c.end() }
    }
  }
}
