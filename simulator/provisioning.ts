// Provisioning a fleet through the public API, and the credentials file
// that keeps it. POST /v1/devices/bulk answers with NDJSON, one line per
// device ({id, secret}, or {id, error} when that device was refused), sent
// chunk by chunk as each chunk commits, and a last {error, detail} line if
// the server had to stop part-way. The answer is read as it streams: every
// secret received is handed on at once, so that a run whose provisioning
// fails half-way still keeps (in --credentials) the devices it did create —
// their secrets are shown only this once.
import { closeSync, openSync, writeSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { ApiClient } from './api-client.js'

export interface DeviceCredentials { id: string, secret: string }

export interface BulkRequest { count: number, idPrefix: string, labels?: Record<string, string> }

/** Provisioning did not create every device; `created` holds those it did (already handed on). */
export class ProvisioningError extends Error {
  constructor (message: string, readonly created: DeviceCredentials[]) { super(message) }
}

/**
 * Creates `count` devices named `${idPrefix}-1` … and resolves with their
 * credentials. `onCreated` gets each batch of created devices as soon as it
 * arrives. Throws ProvisioningError when the API refuses the request, refuses
 * some devices, stops part-way or the connection breaks — after `onCreated`
 * has seen every device that was created.
 */
export async function provisionDevices (api: ApiClient, request: BulkRequest, onCreated: (batch: DeviceCredentials[]) => void = () => {}): Promise<DeviceCredentials[]> {
  const res = await api.raw('POST', '/v1/devices/bulk', request)
  if (res.status !== 200 || !res.body) throw new ProvisioningError(`provisioning failed: ${res.status} ${(await res.text()).slice(0, 300)}`, [])
  const created: DeviceCredentials[] = []
  const refused: Array<{ id: string, error: string }> = []
  let stopped: { error: string, detail?: string } | undefined
  const decoder = new TextDecoder()
  let partial = ''
  const take = (lines: string[]) => {
    const batch: DeviceCredentials[] = []
    for (const line of lines) {
      if (!line.trim()) continue
      const m = JSON.parse(line) as { id?: string, secret?: string, error?: string, detail?: string }
      if (m.id !== undefined && m.secret !== undefined) batch.push({ id: m.id, secret: m.secret })
      else if (m.id !== undefined) refused.push({ id: m.id, error: m.error ?? 'unknown' })
      else stopped = { error: m.error ?? 'unknown', detail: m.detail }
    }
    if (batch.length === 0) return
    created.push(...batch)
    onCreated(batch)
  }
  try {
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      const lines = (partial + decoder.decode(chunk, { stream: true })).split('\n')
      partial = lines.pop()!
      take(lines)
    }
    take([partial + decoder.decode()])
  } catch (err) {
    throw new ProvisioningError(`provisioning interrupted after ${created.length} of ${request.count} devices: ${(err as Error).message}`, created)
  }
  if (stopped) throw new ProvisioningError(`the server stopped creating devices after ${created.length} of ${request.count}: ${stopped.error}${stopped.detail ? ` (${stopped.detail})` : ''}`, created)
  if (refused.length > 0) throw new ProvisioningError(`${refused.length} devices could not be created (e.g. ${refused[0]!.id}: ${refused[0]!.error})`, created)
  if (created.length < request.count) throw new ProvisioningError(`provisioning ended after ${created.length} of ${request.count} devices`, created)
  return created
}

/** A credentials file: NDJSON {id, secret} lines (the output of `device:create` works too). */
export async function readCredentialsFile (path: string): Promise<Array<{ id: string, secret?: string }>> {
  return (await readFile(path, 'utf8')).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as { id: string, secret?: string })
}

/**
 * Appends credentials to a new file (mode 0600), created on the first batch.
 * Each batch is written synchronously: what was received is on disk even if
 * the run dies right after.
 */
export function credentialsFileWriter (path: string): { append (batch: DeviceCredentials[]): void, close (): void } {
  let fd: number | undefined
  return {
    append (batch) {
      fd ??= openSync(path, 'wx', 0o600)
      writeSync(fd, batch.map((c) => JSON.stringify({ id: c.id, secret: c.secret }) + '\n').join(''))
    },
    close () {
      if (fd !== undefined) closeSync(fd)
      fd = undefined
    }
  }
}
