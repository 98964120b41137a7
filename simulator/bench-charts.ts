// SVG charts of the benchmark suite (bench-suite.ts), drawn from the
// figures of the run itself: PUBACK latency distributions, one line per
// scenario through its percentiles (p50 … p99.9 and the maximum), on
// logarithmic axes — the x axis spaced by 1/(1 − p), so each "nine" gets the
// same width. Saturation runs and fixed-rate runs go into separate charts
// (their latencies differ by orders of magnitude, and mean different things).
import { mergeHistograms } from './latency-histogram.js'

export interface LatencySeries {
  label: string
  /** Percentile (0–100, 100 = the maximum) → latency in ms. */
  points: Array<{ p: number, ms: number }>
}

const PERCENTILES = [50, 75, 90, 95, 99, 99.5, 99.9]
const COLORS = ['#2f7ed8', '#d8572f', '#3aa655', '#8e44ad', '#e0a800', '#17a2b8', '#6c757d', '#c2185b', '#5d4037', '#1a237e', '#827717', '#00695c']

/** The percentile points of an encoded PUBACK histogram (bench-load.ts results), the maximum as p = 100. */
export function histogramPoints (encoded: string): Array<{ p: number, ms: number }> {
  const h = mergeHistograms([encoded])
  if (h.totalCount === 0) return []
  return [...PERCENTILES.map((p) => ({ p, ms: h.getValueAtPercentile(p) / 1000 })), { p: 100, ms: h.maxValue / 1000 }]
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** x position of a percentile: log10(1 / (1 − p)); the maximum is drawn one step past p99.9. */
const nines = (p: number) => p >= 100 ? 3.5 : Math.log10(100 / (100 - p))

export function svgLatency (title: string, series: LatencySeries[]): string {
  const shown = series.filter((s) => s.points.length > 0)
  const w = 1040; const left = 70; const plotW = 460; const top = 50; const plotH = 300
  const legendX = left + plotW + 30
  const h = Math.max(top + plotH + 60, top + 22 * shown.length + 20)
  const all = shown.flatMap((s) => s.points.map((pt) => pt.ms)).filter((ms) => ms > 0)
  const lo = all.length > 0 ? Math.floor(Math.log10(Math.max(0.1, Math.min(...all)))) : 0
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...all, 1))))
  const xMax = 3.5
  const x = (p: number) => left + nines(p) / xMax * plotW
  const y = (ms: number) => top + plotH - (Math.log10(Math.max(ms, 10 ** lo)) - lo) / (hi - lo) * plotH
  const grid: string[] = []
  for (let e = lo; e <= hi; e++) {
    const yy = y(10 ** e).toFixed(1)
    grid.push(`<line x1="${left}" y1="${yy}" x2="${left + plotW}" y2="${yy}" stroke="#ddd"/><text x="${left - 6}" y="${Number(yy) + 4}" text-anchor="end" font-size="11">${(10 ** e).toLocaleString('en')} ms</text>`)
  }
  for (const p of [50, 90, 99, 99.9, 100]) {
    const xx = x(p).toFixed(1)
    grid.push(`<line x1="${xx}" y1="${top}" x2="${xx}" y2="${top + plotH}" stroke="#ddd"/><text x="${xx}" y="${top + plotH + 16}" text-anchor="middle" font-size="11">${p === 100 ? 'max' : `p${p}`}</text>`)
  }
  const lines = shown.map((s, i) => {
    const color = COLORS[i % COLORS.length]!
    // Past the palette, the colours come again dashed (the legend shows which).
    const dash = i >= COLORS.length ? ' stroke-dasharray="6 3"' : ''
    const pts = s.points.map((pt) => `${x(pt.p).toFixed(1)},${y(pt.ms).toFixed(1)}`).join(' ')
    const p99 = s.points.find((pt) => pt.p === 99)
    const ly = top + 8 + i * 22
    return `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"${dash}/>` +
      s.points.map((pt) => `<circle cx="${x(pt.p).toFixed(1)}" cy="${y(pt.ms).toFixed(1)}" r="2.5" fill="${color}"/>`).join('') +
      `<line x1="${legendX}" y1="${ly - 5}" x2="${legendX + 16}" y2="${ly - 5}" stroke="${color}" stroke-width="3"${dash}/><text x="${legendX + 20}" y="${ly}" font-size="12">${escapeXml(s.label)}${p99 ? ` (p99 ${Math.round(p99.ms * 10) / 10} ms)` : ''}</text>`
  }).join('\n')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n<text x="10" y="24" font-size="16" font-weight="bold">${escapeXml(title)}</text>\n` +
    `${grid.join('\n')}\n<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>\n` +
    `<text x="${left + plotW / 2}" y="${top + plotH + 36}" text-anchor="middle" font-size="12">PUBACK latency percentile (log scale of 1/(1 − p))</text>\n${lines}\n</svg>\n`
}
