// The one transaction block of the code base: BEGIN, the work, COMMIT; on
// any failure ROLLBACK and rethrow. The client goes back to the pool in
// `finally` (pg-pool's README), and when even ROLLBACK fails the connection
// is in an unknown state (broken socket, transaction still open), so it is
// destroyed (release(true)) instead of handed to the next caller.
import type pg from 'pg'

export async function withTransaction<T> (pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let broken = false
  try {
    await client.query('BEGIN')
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (err) {
    await client.query('ROLLBACK').catch(() => { broken = true })
    throw err
  } finally {
    client.release(broken)
  }
}
