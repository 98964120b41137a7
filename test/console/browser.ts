// Shared by the console's browser tests, the memory soak and the screenshot
// script: Debian's Chromium driven by playwright-core (nothing downloads a
// browser), a page that records CSP violations and script errors, and sign-in.
import { chromium, type Browser, type Page } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export async function launchBrowser (): Promise<Browser> {
  return await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'] })
}

export interface ConsolePage {
  page: Page
  /** securitypolicyviolation events seen in the page (directive and blocked URI). */
  violations: string[]
  /** Uncaught errors and console.error lines of the page. */
  errors: string[]
  close (): Promise<void>
}

/** A fresh context (own cookies) and page at 1280×800 unless told otherwise. */
export async function openPage (browser: Browser, opts: { width?: number, height?: number } = {}): Promise<ConsolePage> {
  const context = await browser.newContext({ viewport: { width: opts.width ?? 1280, height: opts.height ?? 800 } })
  const page = await context.newPage()
  const violations: string[] = []
  const errors: string[] = []
  // Injected through the DevTools protocol before any page script, so the
  // page's own CSP does not apply to it.
  await page.exposeFunction('__reportCspViolation', (v: string) => { violations.push(v) })
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window as unknown as { __reportCspViolation (v: string): void }).__reportCspViolation(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`)
    })
  })
  page.on('pageerror', (err) => errors.push(err.message))
  page.on('console', (msg) => {
    // Failed requests the console handles itself (401 before sign-in, a deliberate 403) are logged by Chromium as errors; they are not script errors.
    if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) errors.push(msg.text())
  })
  return { page, violations, errors, close: () => context.close() }
}

export async function signIn (page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(baseUrl + '/')
  await page.getByLabel('API token').fill(token)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('button', { name: 'Sign out' }).waitFor()
}
