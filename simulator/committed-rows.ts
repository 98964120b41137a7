// Stored rows as the broker counts them (fleetgate_ingest_rows_committed_total,
// incremented once a batch's COMMIT has returned), read from its /metrics.
//
// Why not `SELECT count(*) FROM telemetry` around each measured window: after
// a few saturation runs the table holds millions of rows and the count is a
// parallel sequential scan taking 0.6–2.5 s of both cores of this machine.
// Messages published meanwhile are acknowledged late, and those acks land in
// the next window's PUBACK histogram: at a quarter load that alone made p99
// 360–790 ms where p90 was 20–90 ms (issue 15, target 3). A scrape costs the
// broker about a millisecond. The table is still counted, once before and
// once after the scenario, outside every measured window, to check the
// counter against it (`verifyCommitted`).
import type pg from 'pg'

/** Rows in the telemetry table: a full count, for outside measured windows (or a table that stays small). */
export function tableRows (db: pg.Client | pg.Pool): () => Promise<number> {
  return async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM telemetry')).rows[0]!.n)
}

/** The broker's committed-rows counter. */
export function committedRows (metricsUrl: string): () => Promise<number> {
  return async () => {
    const res = await fetch(metricsUrl)
    if (!res.ok) throw new Error(`${metricsUrl}: HTTP ${res.status}`)
    const text = await res.text()
    const m = /^fleetgate_ingest_rows_committed_total (\S+)$/m.exec(text)
    if (!m) throw new Error(`${metricsUrl}: no fleetgate_ingest_rows_committed_total`)
    return Number(m[1])
  }
}

export interface CommittedCheck {
  /** Rows the table gained over the scenario. */
  table: number
  /** Rows the broker counted as committed over the scenario. */
  counted: number
  /** The counter agrees with the table (it also counts a retransmitted reading stored once, so it may be a little higher). */
  ok: boolean
}

/**
 * Counts the table and reads the counter now; `check()`, once the load has
 * stopped, waits for the counter to settle (the last batches commit) and
 * compares both deltas.
 */
export async function verifyCommitted (tableRows: () => Promise<number>, counter: () => Promise<number>): Promise<{ check: () => Promise<CommittedCheck> }> {
  const [t0, c0] = [await tableRows(), await counter()]
  return {
    async check () {
      let last = await counter()
      for (let still = 0, tries = 0; still < 5 && tries < 150; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 200))
        const now = await counter()
        still = now === last ? still + 1 : 0
        last = now
      }
      const table = (await tableRows()) - t0
      const counted = (await counter()) - c0
      // Readings a device retransmitted (QoS 1 after a reconnect) are in a
      // committed batch twice and stored once: allow 0.1 %.
      return { table, counted, ok: counted >= table && counted - table <= Math.max(10, table * 0.001) }
    }
  }
}

/** One line for a benchmark's log: both deltas, and whether they agree. */
export function committedLine (c: CommittedCheck): string {
  return `the table gained ${c.table}, the broker counted ${c.counted} committed — ${c.ok ? 'they agree' : 'THEY DISAGREE'}`
}
