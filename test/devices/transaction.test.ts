// devices/transaction.ts: the one BEGIN/COMMIT/ROLLBACK block. Commits and
// rollbacks on a real PostgreSQL; a fake client only for the failure that
// cannot be produced on demand (a ROLLBACK that fails on a connection that
// still looks usable), where the client must be destroyed, not pooled.
import test from 'ava'
import pg from 'pg'
import { withTransaction } from '../../devices/transaction.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'

let db: TestDatabase
let pool: pg.Pool
test.before(async () => {
  db = await createTestDatabase()
  pool = new pg.Pool({ connectionString: db.url, max: 1 })
  await pool.query('CREATE TABLE tx_probe (n integer PRIMARY KEY)')
})
test.after.always(async () => { await pool?.end(); await db?.drop() })

const stored = async () => (await pool.query<{ n: number }>('SELECT n FROM tx_probe ORDER BY n')).rows.map((r) => r.n)

test.serial('commits the work and returns its value', async (t) => {
  const value = await withTransaction(pool, async (client) => {
    await client.query('INSERT INTO tx_probe VALUES (1), (2)')
    return 'done'
  })
  t.is(value, 'done')
  t.deepEqual(await stored(), [1, 2])
})

test.serial('a failure part-way rolls everything back, rethrows the same error and keeps the connection', async (t) => {
  const pid = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
  const failure = new Error('refused half-way')
  const err = await t.throwsAsync(withTransaction(pool, async (client) => {
    await client.query('INSERT INTO tx_probe VALUES (3)')
    throw failure
  }))
  t.is(err, failure)
  t.deepEqual(await stored(), [1, 2])
  // Rolled back cleanly: the same session serves the next caller, outside any transaction.
  // (Inside a transaction left open, now() would be older than the statement.)
  const after = (await pool.query<{ pid: number, outside: boolean }>('SELECT pg_backend_pid() AS pid, now() = statement_timestamp() AS outside')).rows[0]!
  t.is(after.pid, pid)
  t.true(after.outside)
})

test.serial('a statement PostgreSQL refuses rolls the earlier ones back', async (t) => {
  const err = await t.throwsAsync(withTransaction(pool, async (client) => {
    await client.query('INSERT INTO tx_probe VALUES (4)')
    await client.query('INSERT INTO tx_probe VALUES (1)') // duplicate key
  }))
  t.is((err as Error & { code?: string }).code, '23505')
  t.deepEqual(await stored(), [1, 2])
})

test('a client whose ROLLBACK fails is destroyed, and the work\'s error is the one thrown', async (t) => {
  const released: unknown[] = []
  const client = {
    async query (sql: string) {
      if (sql === 'ROLLBACK') throw new Error('connection lost during ROLLBACK')
      return { rows: [], rowCount: 0 }
    },
    release (destroy?: boolean) { released.push(destroy) }
  }
  const fakePool = { connect: async () => client } as unknown as pg.Pool
  const failure = new Error('work failed')
  t.is(await t.throwsAsync(withTransaction(fakePool, async () => { throw failure })), failure)
  t.deepEqual(released, [true])
})

test('a client is released exactly once, normally, after a commit', async (t) => {
  const released: unknown[] = []
  const statements: string[] = []
  const client = {
    async query (sql: string) { statements.push(sql); return { rows: [], rowCount: 0 } },
    release (destroy?: boolean) { released.push(destroy) }
  }
  await withTransaction({ connect: async () => client } as unknown as pg.Pool, async (c) => { await c.query('SELECT 1') })
  t.deepEqual(statements, ['BEGIN', 'SELECT 1', 'COMMIT'])
  t.deepEqual(released, [false])
})
