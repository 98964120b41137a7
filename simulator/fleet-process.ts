// Fleets in child processes (issue 4), for the simulator and the benchmarks.
// Child processes, not threads: each process has its own 20,000-open-files
// budget, and the load's CPU can be measured apart from the broker's.
//
// The parent side is forkFleets(specs): one child per FleetSpec, and one
// handle over all of them (readiness, live ticks, measurement windows,
// merged reports). The child side, at the bottom of this file, runs
// startFleet() (fleet-runner.ts) and speaks over IPC:
//   parent → child   start {spec}, measure, report, stop {drainMs}
//   child → parent   settled {readiness} once, tick every second,
//                    config-applied batches every 50 ms, report, final
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startFleet, mergeReadiness, mergeReports, type FleetReport, type FleetSpec, type FleetTick, type MergedReport, type Readiness } from './fleet-runner.js'

type ToChild =
  | { type: 'start', spec: FleetSpec }
  | { type: 'measure' }
  | { type: 'release' }
  | { type: 'report' }
  | { type: 'stop', drainMs: number }

type FromChild =
  | { type: 'settled', readiness: Readiness }
  | { type: 'tick', tick: FleetTick, cpuSeconds: number }
  | { type: 'config-applied', reports: Array<[id: string, version: number, at: number]> }
  | { type: 'report' | 'final', report: FleetReport, cpuSeconds: number }

export type ProcessTick = FleetTick & { cpuSeconds: number }
export type ProcessesReport = MergedReport & { cpuSeconds: number }

export interface FleetProcesses {
  readonly pids: number[]
  /** Resolves once every device of every process has been ready once or has given up. */
  settled (): Promise<Readiness>
  /** The latest tick of each process (those that sent one). */
  ticks (): ProcessTick[]
  /** Starts a measurement window in every process. */
  /** Specs with holdLoad: every fleet starts publishing (call once all have settled). */
  release (): void
  measure (): void
  /** What every process measured so far, merged. */
  report (): Promise<ProcessesReport>
  /** Stops every fleet (messages in flight get `drainMs`), and waits for the processes to exit. */
  stop (drainMs?: number): Promise<ProcessesReport>
}

export interface FleetProcessHooks {
  /** A device reported a config version (its PUBACK arrived) at epoch ms `at`. */
  configApplied? (id: string, version: number, at: number): void
}

// Run compiled (dist/…/fleet-process.js) or under tsx (….ts), like the parent.
const childPath = fileURLToPath(import.meta.url)

export function forkFleets (specs: FleetSpec[], hooks: FleetProcessHooks = {}): FleetProcesses {
  const children = specs.map((spec) => {
    // 'advanced': structured clone, so Infinity (an unbounded ramp) survives.
    const proc = fork(childPath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' })
    const state = {
      proc,
      tick: undefined as ProcessTick | undefined,
      readiness: undefined as Readiness | undefined,
      waiting: new Map<string, Array<{ resolve (m: FromChild): void, reject (e: Error): void }>>(),
      exited: new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    }
    const deliver = (type: string, m: FromChild) => {
      const list = state.waiting.get(type) ?? []
      state.waiting.delete(type)
      for (const w of list) w.resolve(m)
    }
    proc.on('message', (m: FromChild) => {
      if (m.type === 'tick') state.tick = { ...m.tick, cpuSeconds: m.cpuSeconds }
      else if (m.type === 'config-applied') { for (const [id, version, at] of m.reports) hooks.configApplied?.(id, version, at) } else if (m.type === 'settled') { state.readiness = m.readiness; deliver('settled', m) } else deliver(m.type, m)
    })
    proc.once('exit', (code, signal) => {
      const err = new Error(`fleet process ${proc.pid} exited (${signal ?? code}) before answering`)
      for (const list of state.waiting.values()) for (const w of list) w.reject(err)
      state.waiting.clear()
    })
    proc.send({ type: 'start', spec } satisfies ToChild)
    return state
  })
  type State = typeof children[number]
  const ask = (c: State, type: FromChild['type'], request?: ToChild) => new Promise<FromChild>((resolve, reject) => {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) { reject(new Error(`fleet process ${c.proc.pid} has exited`)); return }
    const list = c.waiting.get(type) ?? []
    list.push({ resolve, reject })
    c.waiting.set(type, list)
    if (request) c.proc.send(request)
  })
  const merged = (answers: FromChild[]): ProcessesReport => {
    const reports = answers as Array<Extract<FromChild, { type: 'report' | 'final' }>>
    return { ...mergeReports(reports.map((r) => r.report)), cpuSeconds: reports.reduce((a, r) => a + r.cpuSeconds, 0) }
  }

  return {
    pids: children.map((c) => c.proc.pid!),
    async settled () {
      const all = await Promise.all(children.map(async (c) => c.readiness ?? (await ask(c, 'settled') as Extract<FromChild, { type: 'settled' }>).readiness))
      return mergeReadiness(all)
    },
    ticks: () => children.flatMap((c) => c.tick ? [c.tick] : []),
    release () { for (const c of children) c.proc.send({ type: 'release' } satisfies ToChild) },
    measure () { for (const c of children) c.proc.send({ type: 'measure' } satisfies ToChild) },
    async report () {
      return merged(await Promise.all(children.map((c) => ask(c, 'report', { type: 'report' }))))
    },
    async stop (drainMs = 5000) {
      const finals = await Promise.all(children.map((c) => ask(c, 'final', { type: 'stop', drainMs })))
      await Promise.all(children.map((c) => c.exited))
      return merged(finals)
    }
  }
}

// ---- the child ----

function runChild () {
  const send = (m: FromChild) => { if (process.connected) process.send!(m) }
  const cpu0 = process.cpuUsage()
  const cpuSeconds = () => { const c = process.cpuUsage(cpu0); return (c.user + c.system) / 1e6 }
  // The parent gone (killed, crashed): nothing to report to.
  process.on('disconnect', () => process.exit(0))
  process.once('message', (start: ToChild) => {
    if (start.type !== 'start') throw new Error(`fleet process: expected start, got ${start.type}`)
    let applied: Array<[string, number, number]> = []
    const fleet = startFleet(start.spec, { configApplied: (id, version, at) => { applied.push([id, version, at]) } })
    const flush = setInterval(() => {
      if (applied.length > 0) { send({ type: 'config-applied', reports: applied }); applied = [] }
    }, 50)
    const ticker = setInterval(() => send({ type: 'tick', tick: fleet.tick(), cpuSeconds: cpuSeconds() }), 1000)
    void fleet.settled().then((readiness) => send({ type: 'settled', readiness }))
    process.on('message', (m: ToChild) => {
      if (m.type === 'measure') fleet.measure()
      else if (m.type === 'release') fleet.release()
      else if (m.type === 'report') send({ type: 'report', report: fleet.report(), cpuSeconds: cpuSeconds() })
      else if (m.type === 'stop') {
        clearInterval(ticker)
        void fleet.stop({ drainMs: m.drainMs }).then((report) => {
          clearInterval(flush)
          if (applied.length > 0) send({ type: 'config-applied', reports: applied })
          // Exit once the report has left (process.send is asynchronous).
          if (process.connected) process.send!({ type: 'final', report, cpuSeconds: cpuSeconds() } satisfies FromChild, () => process.exit(0))
          else process.exit(0)
        })
      }
    })
  })
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) runChild()
