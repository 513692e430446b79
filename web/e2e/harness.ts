// The browser tests' world: a parley built from this checkout, started on
// free ports against a fresh Postgres database, and Debian's Chromium.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { get as httpsGet } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

const run = promisify(execFile)
export const webDir = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const repoDir = resolve(webDir, '..')
export const shotsDir = join(repoDir, 'test-output', 'web')
const chromiumPath = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium'
const pgHost = process.env.PARLEY_TEST_PGHOST ?? '127.0.0.1'

/** A port nobody listens on right now (never 1883, 8080 or 8083). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((res, rej) => {
      const s = createServer()
      s.once('error', rej)
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port
        s.close(() => res(p))
      })
    })
    if (![1883, 8080, 8083].includes(port)) return port
  }
}

export interface Parley {
  http: string
  ws: string
  db: string
  logs: string[]
  stop(): Promise<void>
}

/** What a test adds to parley's start: more environment, and a CA file
 * when parley serves HTTPS (its readiness is then checked over TLS). */
export interface StartOptions {
  env?: Record<string, string>
  ca?: string
}

/** GET over HTTPS trusting only the CA in caFile; resolves with the status. */
function httpsStatus(url: string, caFile: string): Promise<number> {
  return new Promise((res, rej) => {
    httpsGet(url, { ca: readFileSync(caFile) }, (r) => {
      r.resume()
      res(r.statusCode ?? 0)
    }).on('error', rej)
  })
}

/** Builds parley (with the built web app embedded) and starts it. */
export async function startParley(opts: StartOptions = {}): Promise<Parley> {
  if (!existsSync(join(webDir, 'dist', 'index.html'))) throw new Error('the web app is not built: run `make web` first')
  const tmp = mkdtempSync(join(tmpdir(), 'parley-web-e2e-'))
  const bin = join(tmp, 'parley')
  await run('go', ['build', '-o', bin, './cmd/parley'], { cwd: repoDir, env: process.env })
  const db = `parley_web_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
  await run('createdb', ['-h', pgHost, '-U', 'postgres', db])
  const [mqttPort, wsPort, httpPort] = [await freePort(), await freePort(), await freePort()]
  const logs: string[] = []
  const proc: ChildProcess = spawn(bin, [], {
    cwd: tmp, // no configs/parley.yaml here: defaults and the environment only
    env: {
      ...process.env,
      PARLEY_DATABASE_URL: `postgres://postgres@${pgHost}:5432/${db}?sslmode=disable`,
      PARLEY_MQTT_ADDR: `127.0.0.1:${mqttPort}`,
      PARLEY_WS_ADDR: `127.0.0.1:${wsPort}`,
      PARLEY_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      PARLEY_LOG_LEVEL: 'info',
      PARLEY_WEB_DEBUG: 'true', // window.parley, which the tests read
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const keep = (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean))
  proc.stdout!.on('data', keep)
  proc.stderr!.on('data', keep)
  const http = `${opts.ca ? 'https' : 'http'}://127.0.0.1:${httpPort}`
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)))
  const stop = async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(t)
    }
    await run('dropdb', ['-h', pgHost, '-U', 'postgres', '--if-exists', '--force', db]).catch((err) =>
      console.warn(`dropdb ${db}: ${err.message}`),
    )
    rmSync(tmp, { recursive: true, force: true })
  }
  const deadline = Date.now() + 30_000
  for (;;) {
    if (proc.exitCode !== null) {
      await stop()
      throw new Error(`parley exited (${proc.exitCode}):\n${logs.join('\n')}`)
    }
    try {
      if (opts.ca ? (await httpsStatus(`${http}/readyz`, opts.ca)) === 200 : (await fetch(`${http}/readyz`)).ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`parley not ready in 30 s:\n${logs.join('\n')}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return { http, ws: `${opts.ca ? 'wss' : 'ws'}://127.0.0.1:${wsPort}/mqtt`, db, logs, stop }
}

export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(`no Chromium at ${chromiumPath}: apt-get install -y chromium (or set PARLEY_CHROMIUM)`)
  }
  // Playwright gives each launch a fresh, temporary user-data-dir.
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  })
}

/** Saves a screenshot as test-output/web/NN-name.png and returns its path. */
let shot = 0
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(shotsDir, { recursive: true })
  const file = join(shotsDir, `${String(++shot).padStart(2, '0')}-${name}.png`)
  await page.screenshot({ path: file })
  return file
}

export function resetShots() {
  rmSync(shotsDir, { recursive: true, force: true })
  mkdirSync(shotsDir, { recursive: true })
}

export const phone = { viewport: { width: 390, height: 780 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
export const desktop = { viewport: { width: 1200, height: 760 } }

/** A context's page with the console errors collected. */
export { freePort }

export async function openPage(ctx: BrowserContext, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await ctx.newPage()
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket|ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(m.text())) errors.push(m.text())
  })
  await page.goto(url)
  return { page, errors }
}
