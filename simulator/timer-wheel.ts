// One timer for a whole fleet (issue 4): tens of thousands of virtual
// devices each with a telemetry interval, a reconnect delay or a command to
// answer would be as many Node.js timers; instead every due action sits in a
// slot of `slotMs` and one interval runs the slots that came due. An action is
// never run before its time, and at most about one slot after it.

export interface TimerWheel {
  /** Runs `fn` at epoch ms `at` (the next slot if that is already past). */
  schedule (at: number, fn: () => void): void
  stop (): void
}

export function createTimerWheel (opts: { slotMs?: number, onTick?: (now: number) => void } = {}): TimerWheel {
  const slotMs = opts.slotMs ?? 10
  const slots = new Map<number, Array<() => void>>()
  let lastSlot = Math.floor(Date.now() / slotMs)
  const timer = setInterval(() => {
    const now = Date.now()
    const slot = Math.floor(now / slotMs)
    for (let s = lastSlot + 1; s <= slot; s++) {
      const due = slots.get(s)
      if (!due) continue
      slots.delete(s)
      for (const fn of due) fn()
    }
    lastSlot = slot
    opts.onTick?.(now)
  }, slotMs)
  return {
    schedule (at, fn) {
      const slot = Math.max(Math.floor(at / slotMs), lastSlot + 1)
      const due = slots.get(slot)
      if (due) due.push(fn); else slots.set(slot, [fn])
    },
    stop () {
      clearInterval(timer)
      slots.clear()
    }
  }
}
