// The web app over TLS in a real browser, as production runs it: parley
// serves HTTPS and wss from a certificate this test makes (its own CA,
// openssl), Chromium trusts exactly that certificate's key, and two people
// chat; a browser that does not trust it is refused. Also the page's
// security policy as Chromium applies it: no handle on the client for page
// scripts (web.debug off), no framing by another site, and no WebSocket to
// parley from another site's page.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { desktop, freePort, launchChromium, openPage, startParley, type Parley } from './harness'

const run = promisify(execFile)

let dir: string
let parley: Parley
let browser: Browser
let spki: string
let evil: Server
let evilUrl: string

/** A CA and a server certificate for 127.0.0.1 signed by it, in dir. */
async function makeCertificates(dir: string) {
  const ssl = (...args: string[]) => run('openssl', args, { cwd: dir })
  await ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=Parley test CA', '-keyout', 'ca.key', '-out', 'ca.pem')
  await ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1',
    '-keyout', 'server.key', '-out', 'server.csr')
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  await ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', 'ext.cnf', '-out', 'server.pem')
  // Chromium's --ignore-certificate-errors-spki-list takes the base64 SHA-256
  // of the certificate's SubjectPublicKeyInfo: it trusts that key alone.
  const { stdout } = await run('sh', ['-c',
    'openssl x509 -in server.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64'],
    { cwd: dir })
  return stdout.trim()
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-web-tls-'))
  spki = await makeCertificates(dir)
  ;[parley, browser] = await Promise.all([
    startParley({
      ca: join(dir, 'ca.pem'),
      env: {
        PARLEY_TLS_CERT_FILE: join(dir, 'server.pem'),
        PARLEY_TLS_KEY_FILE: join(dir, 'server.key'),
        PARLEY_MQTT_TLS_ADDR: `127.0.0.1:${await freePort()}`,
        PARLEY_WEB_DEBUG: 'false', // as in production
      },
    }),
    launchChromium([`--ignore-certificate-errors-spki-list=${spki}`]),
  ])
})

afterAll(async () => {
  evil?.close()
  await browser?.close()
  await parley?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

async function signUp(page: Page, id: string) {
  await page.getByRole('tab', { name: 'Create account' }).click()
  await page.getByLabel('User id').fill(id)
  await page.getByLabel('Your name').fill(id)
  await page.getByLabel('Password').fill(`${id}-password`)
  await page.getByRole('button', { name: 'Create account' }).last().click()
  await page.locator('aside.sidebar').waitFor()
}

/** An HTTPS request to parley trusting only the test's CA; the body, or a failure below 2xx/3xx. */
function httpsJSON(method: string, path: string, bearer?: string, body?: object): Promise<string> {
  return new Promise((res, rej) => {
    const data = body ? JSON.stringify(body) : undefined
    const req = httpsRequest(
      parley.http + path,
      {
        method,
        ca: readFileSync(join(dir, 'ca.pem')),
        headers: { ...(bearer ? { Authorization: `Bearer ${bearer}` } : {}), ...(data ? { 'Content-Type': 'application/json' } : {}) },
      },
      (r) => {
        let out = ''
        r.on('data', (c) => (out += c))
        r.on('end', () => ((r.statusCode ?? 0) < 400 ? res(out) : rej(new Error(`${method} ${path}: ${r.statusCode} ${out}`))))
      },
    )
    req.on('error', rej)
    req.end(data)
  })
}

/** Opens a WebSocket to url from the page: 'open' or 'error'. */
function tryWebSocket(page: Page, url: string): Promise<string> {
  return page.evaluate(
    (u) =>
      new Promise<string>((res) => {
        const ws = new WebSocket(u, 'mqtt')
        ws.onopen = () => {
          ws.close()
          res('open')
        }
        ws.onerror = () => res('error')
      }),
    url,
  )
}

describe.sequential('web messenger over TLS', () => {
  it('serves the app over HTTPS and chats over wss', async () => {
    expect(parley.http.startsWith('https://')).toBe(true)
    const sockets: string[] = []
    const open = async () => {
      const ctx = await browser.newContext(desktop)
      const { page, errors } = await openPage(ctx, parley.http + '/')
      page.on('websocket', (ws) => sockets.push(ws.url()))
      return { page, errors }
    }
    const alice = await open()
    await signUp(alice.page, 'alice')
    const bob = await open()
    await signUp(bob.page, 'bob')

    await alice.page.getByRole('button', { name: 'New chat' }).first().click()
    await alice.page.locator('input[name=peer]').fill('bob')
    await alice.page.keyboard.press('Enter')
    await alice.page.locator('.chat-head').waitFor()
    await alice.page.getByRole('textbox', { name: 'Message' }).fill('Hello over TLS')
    await alice.page.getByRole('textbox', { name: 'Message' }).press('Enter')
    await bob.page.getByText('Hello over TLS').first().waitFor()

    expect(sockets.length).toBeGreaterThan(0)
    for (const url of sockets) expect(url.startsWith('wss://127.0.0.1:')).toBe(true)
    expect([...alice.errors, ...bob.errors]).toEqual([])
    // web.debug is off: a script in the page finds no handle on the client.
    expect(await alice.page.evaluate(() => typeof (window as any).parley)).toBe('undefined')
  })

  it('sends its security headers, and Chromium keeps another site from framing it or opening its WebSocket', async () => {
    const ctx = await browser.newContext(desktop)
    const page = await ctx.newPage()
    const res = await page.goto(parley.http + '/')
    const h = res!.headers()
    expect(h['content-security-policy']).toContain("frame-ancestors 'none'")
    expect(h['content-security-policy']).toContain("script-src 'self'")
    expect(h['x-frame-options']).toBe('DENY')
    expect(h['strict-transport-security']).toContain('max-age=')
    // From the app's own page the WebSocket opens.
    expect(await tryWebSocket(page, parley.ws)).toBe('open')

    // Another site (localhost is another host name than 127.0.0.1) frames
    // the app and opens its WebSocket: both refused.
    evil = createServer((_, w) => {
      w.setHeader('Content-Type', 'text/html')
      w.end(`<!doctype html><iframe src="${parley.http}/"></iframe>`)
    })
    const port = await freePort()
    await new Promise<void>((res) => evil.listen(port, '127.0.0.1', res))
    evilUrl = `http://localhost:${port}/`
    const other = await ctx.newPage()
    const blocked = new Promise<string>((res) =>
      other.on('console', (m) => {
        if (/frame-ancestors/.test(m.text())) res(m.text())
      }),
    )
    await other.goto(evilUrl)
    expect(await blocked).toMatch(/frame-ancestors 'none'.*blocked/s)
    expect(await tryWebSocket(other, parley.ws)).toBe('error')
    await ctx.close()
  })

  it('a session revoked elsewhere signs the page out at once', async () => {
    const ctx = await browser.newContext(desktop)
    const { page } = await openPage(ctx, parley.http + '/')
    await signUp(page, 'carol')
    // carol signs in elsewhere and ends every other session: the page's
    // MQTT connection is ended (0x87), and it asks her to sign in again.
    const { token } = JSON.parse(await httpsJSON('POST', '/v1/tokens', undefined, { id: 'carol', password: 'carol-password' }))
    await httpsJSON('DELETE', '/v1/me/sessions', token)
    await page.getByText('Your session has expired. Sign in again.').waitFor()
    await ctx.close()
  })

  it('a browser that does not trust the certificate is refused', async () => {
    const untrusting = await launchChromium()
    try {
      const page = await (await untrusting.newContext()).newPage()
      await expect(page.goto(parley.http + '/')).rejects.toThrow(/ERR_CERT_AUTHORITY_INVALID/)
    } finally {
      await untrusting.close()
    }
  })
})
