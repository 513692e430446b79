// The messenger in a real browser against a real parley: two (later three)
// people chatting, going away and coming back. Screenshots of each step go
// to test-output/web/.
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { desktop, launchChromium, openPage, phone, resetShots, screenshot, startParley, type Parley } from './harness'

let parley: Parley
let browser: Browser
const contexts: BrowserContext[] = []
const pageErrors: string[] = []
const shots: string[] = []
const latencies: number[] = []

async function context(opts: object): Promise<BrowserContext> {
  const c = await browser.newContext(opts)
  contexts.push(c)
  return c
}

async function open(ctx: BrowserContext, path = '/'): Promise<Page> {
  const { page, errors } = await openPage(ctx, parley.http + path)
  pageErrors.push(...errors.map((e) => `${path}: ${e}`))
  page.on('pageerror', (e) => pageErrors.push(e.message))
  return page
}

async function shoot(page: Page, name: string) {
  shots.push(await screenshot(page, name))
}

async function signUp(page: Page, id: string, name: string) {
  await page.getByRole('tab', { name: 'Create account' }).click()
  await page.getByLabel('User id').fill(id)
  await page.getByLabel('Your name').fill(name)
  await page.getByLabel('Password').fill(`${id}-password`)
  await page.getByRole('button', { name: 'Create account' }).last().click()
  await page.locator('aside.sidebar').waitFor()
  await page.waitForFunction(() => (window as any).parley?.client.state === 'online')
}

async function newChat(page: Page, peer: string) {
  await page.getByRole('button', { name: 'New chat' }).first().click()
  await page.locator('input[name=peer]').fill(peer)
  await page.keyboard.press('Enter')
  await page.locator('.chat-head').waitFor()
}

/** The bubble whose text starts with text (or matches a RegExp). */
function bubble(page: Page, text: string | RegExp) {
  const re = typeof text === 'string' ? new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) : text
  return page.locator('[data-testid=bubble]').filter({ has: page.locator('.text', { hasText: re }) })
}

async function type(page: Page, text: string) {
  await page.getByRole('textbox', { name: 'Message' }).fill(text)
}

/** Sends text from `from` (Enter in the composer) and returns ms until `to` shows it. */
async function sendAndTime(from: Page, to: Page, text: string): Promise<number> {
  await to.evaluate((t) => {
    ;(window as any).__seen = new Promise<number>((res) => {
      const seen = () => document.body.innerText.includes(t)
      const mo = new MutationObserver(() => {
        if (seen()) {
          mo.disconnect()
          res(Date.now())
        }
      })
      mo.observe(document.body, { subtree: true, childList: true, characterData: true })
    })
  }, text)
  await type(from, text)
  await from.evaluate(() => {
    addEventListener('keydown', (e) => e.key === 'Enter' && ((window as any).__enter = Date.now()), { capture: true, once: true })
  })
  await from.getByRole('textbox', { name: 'Message' }).press('Enter')
  const seenAt = await to.evaluate(() => (window as any).__seen as Promise<number>)
  const enterAt = await from.evaluate(() => (window as any).__enter as number)
  return seenAt - enterAt
}

beforeAll(async () => {
  resetShots()
  const t0 = Date.now()
  ;[parley, browser] = await Promise.all([startParley(), launchChromium()])
  console.log(`parley (built and started) and Chromium ready in ${Date.now() - t0} ms; database ${parley.db}`)
})

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {})
  await browser?.close()
  await parley?.stop()
  if (latencies.length) {
    const sorted = [...latencies].sort((a, b) => a - b)
    console.log(
      `send→display (Enter in one window → the message shown in the other): ${latencies.map((l) => `${l} ms`).join(', ')}; median ${sorted[Math.floor(sorted.length / 2)]} ms`,
    )
  }
  console.log(`screenshots:\n  ${shots.join('\n  ')}`)
})

describe.sequential('web messenger', () => {
  let alice: Page
  let bob: Page
  let bobCtx: BrowserContext
  let carol: Page

  it('serves the app with the WebSocket endpoint filled in', async () => {
    const html = await (await fetch(parley.http + '/c/u/someone')).text()
    const port = new URL(parley.ws).port
    expect(html).toContain(`<meta name="parley-ws" content=":${port}/mqtt">`)
  })

  it('alice and bob sign up', async () => {
    alice = await open(await context(desktop))
    await shoot(alice, 'sign-in-screen')
    await signUp(alice, 'alice', 'Alice Liddell')
    bobCtx = await context(phone)
    bob = await open(bobCtx)
    await signUp(bob, 'bob', 'Bob Builder')
    await shoot(alice, 'alice-signed-up')
    await shoot(bob, 'bob-signed-up-phone')
    const id = await alice.evaluate(() => (window as any).parley.client.deviceId)
    expect(id).toMatch(/^alice\/web-[0-9a-f]{8}$/)
  })

  it('alice opens a chat with bob and sends; bob sees it live with an unread badge', async () => {
    await newChat(alice, 'bob')
    await expect.poll(() => alice.locator('.chat-title strong').textContent()).toBe('Bob Builder')
    latencies.push(await sendAndTime(alice, bob, 'Hi Bob! Are you coming tonight?'))
    await expect.poll(() => bubble(alice, 'Hi Bob!').getAttribute('data-status')).toMatch(/sent|delivered/)
    const item = bob.locator('button.conv[data-conv="u/alice"]')
    await expect.poll(() => item.locator('[data-testid=unread]').textContent()).toBe('1')
    expect(await item.textContent()).toContain('Hi Bob! Are you coming tonight?')
    expect(await item.textContent()).toContain('Alice Liddell')
    await shoot(alice, 'alice-sent')
    await shoot(bob, 'bob-unread-badge')
  })

  it('bob opens the chat: the badge goes, alice sees it read ✓✓', async () => {
    await bob.locator('button.conv[data-conv="u/alice"]').click()
    await bubble(bob, 'Hi Bob!').waitFor()
    await expect.poll(() => bob.locator('[data-testid=unread]').count()).toBe(0)
    await shoot(bob, 'bob-opened-chat')
    // Bob's read marker: the server sends alice a read receipt.
    await expect.poll(() => bubble(alice, 'Hi Bob!').getAttribute('data-status')).toBe('read')
    await shoot(alice, 'alice-read')
  })

  it('bob replies; more messages, timed', async () => {
    latencies.push(await sendAndTime(bob, alice, 'Sure! I will bring snacks.'))
    for (const text of ['Great, see you at 8', 'Bring the board game too', 'And an umbrella, it may rain']) {
      latencies.push(await sendAndTime(alice, bob, text))
    }
    await expect.poll(() => bubble(alice, 'And an umbrella').getAttribute('data-status')).toMatch(/delivered|read/)
  })

  it('a second tab of alice gets its own device id and sees the same conversation live', async () => {
    const alice2 = await open(alice.context(), '/c/u/bob')
    await alice2.waitForFunction(() => (window as any).parley?.client.state === 'online')
    const [id1, id2] = await Promise.all([alice, alice2].map((p) => p.evaluate(() => (window as any).parley.client.deviceId)))
    expect(id2).toMatch(/^alice\/web-[0-9a-f]{8}$/)
    expect(id2).not.toBe(id1)
    await type(bob, 'Two tabs, one alice')
    await bob.getByRole('textbox', { name: 'Message' }).press('Enter')
    await Promise.all([bubble(alice, 'Two tabs').waitFor(), bubble(alice2, 'Two tabs').waitFor()])
    // Neither tab takes the other's MQTT session.
    await alice.waitForTimeout(1500)
    expect(await alice.evaluate(() => (window as any).parley.client.state)).toBe('online')
    expect(await alice2.evaluate(() => (window as any).parley.client.state)).toBe('online')
    await alice2.close()
  })

  it('typing shows while bob types', async () => {
    await bob.getByRole('textbox', { name: 'Message' }).pressSequentially('Let me ch', { delay: 30 })
    await alice.locator('[data-testid=typing]').waitFor({ timeout: 5000 })
    expect(await alice.locator('[data-testid=typing]').textContent()).toBe('typing…')
    await shoot(alice, 'alice-sees-bob-typing')
    await bob.getByRole('textbox', { name: 'Message' }).fill('')
  })

  it('bob goes away (context closed); alice sends two more; bob returns and sees them in order', async () => {
    const state = await bobCtx.storageState()
    await bobCtx.close()
    for (const text of ['Are you there?', 'Call me when you see this']) {
      await type(alice, text)
      await alice.getByRole('textbox', { name: 'Message' }).press('Enter')
      await expect.poll(() => bubble(alice, text).getAttribute('data-status')).toBe('sent')
    }
    await shoot(alice, 'alice-sent-while-bob-away')
    // The same device comes back: same client id, persistent session.
    bobCtx = await context({ ...phone, storageState: state })
    bob = await open(bobCtx, '/c/u/alice')
    await bubble(bob, 'Call me when you see this').waitFor()
    const texts = await bob.locator('[data-testid=bubble] .text').allTextContents()
    const i = texts.indexOf('Are you there?')
    expect(i).toBeGreaterThan(0)
    expect(texts.slice(i)).toEqual(['Are you there?', 'Call me when you see this'])
    expect(texts.filter((t) => t === 'Are you there?').length).toBe(1)
    await expect.poll(() => bubble(alice, 'Call me').getAttribute('data-status'), { timeout: 10_000 }).toMatch(/delivered|read/)
    await shoot(bob, 'bob-back-in-order')
    await shoot(alice, 'alice-delivered-after-return')
  })

  it('bob loses the network: offline banner, then back online with what he missed', async () => {
    await bobCtx.setOffline(true)
    await expect.poll(() => bob.locator('[data-testid=banner]').getAttribute('data-state')).toBe('offline')
    await shoot(bob, 'bob-offline-banner')
    await type(alice, 'Did you get my messages?')
    await alice.getByRole('textbox', { name: 'Message' }).press('Enter')
    await expect.poll(() => bubble(alice, 'Did you get').getAttribute('data-status')).toBe('sent')
    await bobCtx.setOffline(false)
    await bubble(bob, 'Did you get my messages?').waitFor({ timeout: 15_000 })
    await expect.poll(() => bob.locator('[data-testid=banner]').getAttribute('data-state')).toBe('back')
    await shoot(bob, 'bob-back-online')
  })

  it('alice writes while offline: the message waits (clock) and goes out on reconnect', async () => {
    const aliceCtx = alice.context()
    await aliceCtx.setOffline(true)
    await expect.poll(() => alice.locator('[data-testid=banner]').getAttribute('data-state')).toBe('offline')
    await type(alice, 'Written on the train')
    await alice.getByRole('textbox', { name: 'Message' }).press('Enter')
    await expect.poll(() => bubble(alice, 'Written on the train').getAttribute('data-status')).toMatch(/queued|sending/)
    await shoot(alice, 'alice-queued-offline')
    await aliceCtx.setOffline(false)
    await bubble(bob, 'Written on the train').waitFor({ timeout: 15_000 })
    await expect.poll(() => bubble(alice, 'Written on the train').getAttribute('data-status'), { timeout: 10_000 }).toMatch(/delivered|read/)
    expect(await bubble(alice, 'Written on the train').count()).toBe(1)
    await shoot(alice, 'alice-queued-delivered')
  })

  it('bob scrolls back through a long history', async () => {
    // 150 messages at once, around the server's rate limit (50/s, burst
    // 100): any 0x97 is retried with the same cid.
    const t0 = Date.now()
    const sendAll = await alice.evaluate(async () => {
      const c = (window as any).parley.client
      let limited = 0
      const off = c.on('outbox', (m: any) => m.code === 0x97 && limited++)
      for (let i = 1; i <= 150; i++) c.send('u/bob', { text: `History ${i}` })
      await new Promise<void>((res) => {
        const check = () => (c.outbox.length === 0 ? res() : setTimeout(check, 50))
        check()
      })
      off()
      return limited
    })
    await bubble(bob, /^History 150$/).waitFor({ timeout: 20_000 })
    console.log(`150 messages sent and shown in ${Date.now() - t0} ms (${sendAll} rate-limited publishes retried)`)
    const t1 = Date.now()
    await bob.reload() // a fresh page holds only the newest page of history
    await bubble(bob, /^History 150$/).waitFor()
    expect(await bubble(bob, /^History 1$/).count()).toBe(0)
    const messages = bob.locator('[data-testid=messages]')
    for (let i = 0; i < 20 && (await bob.locator('.start', { hasText: 'beginning' }).count()) === 0; i++) {
      await messages.evaluate((el) => el.scrollTo({ top: 0 }))
      await bob.waitForTimeout(150)
    }
    await bubble(bob, 'Hi Bob! Are you coming tonight?').waitFor()
    console.log(`scrolled back to the first message in ${Date.now() - t1} ms`)
    const texts = await bob.locator('[data-testid=bubble] .text').allTextContents()
    const history = texts.filter((t) => t.startsWith('History ')).map((t) => Number(t.slice(8)))
    expect(history).toEqual(Array.from({ length: 150 }, (_, i) => i + 1))
    await messages.evaluate((el) => el.scrollTo({ top: 0 }))
    await shoot(bob, 'bob-scrolled-to-the-beginning')
  })

  it('a new chat with someone who does not exist says so', async () => {
    await alice.getByRole('button', { name: 'New chat' }).first().click()
    await alice.locator('input[name=peer]').fill('nobody-here')
    await alice.keyboard.press('Enter')
    await expect.poll(() => alice.locator('dialog [role=alert]').textContent()).toContain('There is no user “nobody-here”')
    await shoot(alice, 'new-chat-unknown-user')
    await alice.keyboard.press('Escape')
    await expect.poll(() => alice.locator('dialog[open]').count()).toBe(0)
  })

  it('presence: bob online, then grey with last seen when he leaves', async () => {
    await expect.poll(() => alice.locator('.chat-head [data-presence]').getAttribute('data-presence')).toBe('online')
    expect(await alice.locator('[data-testid=presence]').textContent()).toBe('online')
    await shoot(alice, 'alice-sees-bob-online')
    await bobCtx.close()
    await expect.poll(() => alice.locator('.chat-head [data-presence]').getAttribute('data-presence'), { timeout: 15_000 }).toBe('offline')
    expect(await alice.locator('[data-testid=presence]').textContent()).toMatch(/last seen|offline/)
    await shoot(alice, 'alice-sees-bob-offline')
  })

  it('a group of three chats', async () => {
    carol = await open(await context(desktop))
    await signUp(carol, 'carol', 'Carol Danvers')
    await alice.getByRole('button', { name: 'New group' }).click()
    await alice.locator('input[name=group-name]').fill('Saturday trip')
    await alice.locator('input[name=members]').fill('bob, carol')
    await alice.getByRole('button', { name: 'Create group' }).click()
    await alice.locator('.chat-title strong', { hasText: 'Saturday trip' }).waitFor()
    await alice.locator('.system', { hasText: 'created the group' }).waitFor()
    await type(alice, 'Who is in for Saturday?')
    await alice.getByRole('textbox', { name: 'Message' }).press('Enter')
    // Carol learns she is in the group from the notice in her inbox, live.
    const t0 = Date.now()
    await carol.locator('button.conv', { hasText: 'Saturday trip' }).waitFor({ timeout: 5000 })
    console.log(`groups: carol saw the new group after ${Date.now() - t0} ms`)
    await carol.locator('button.conv', { hasText: 'Saturday trip' }).click()
    await bubble(carol, 'Who is in for Saturday?').waitFor()
    latencies.push(await sendAndTime(carol, alice, 'Me! Count me in'))
    latencies.push(await sendAndTime(alice, carol, 'Great, three of us then'))
    await shoot(carol, 'group-carol')
    await shoot(alice, 'group-alice')
    await alice.getByRole('button', { name: 'Group info' }).click()
    await alice.locator('dialog .members li').nth(2).waitFor()
    expect(await alice.locator('dialog .members li').count()).toBe(3)
    await shoot(alice, 'group-info')
    await alice.keyboard.press('Escape')
  })

  it('a removed member keeps the group by name, read-only, with its history up to the removal, also after a reload', async () => {
    const conv = new URL(alice.url()).pathname.slice(3) // /c/g/{id}
    expect(conv).toMatch(/^g\//)
    await carol.locator(`button.conv[data-conv="${conv}"]`).click()
    await bubble(carol, 'Great, three of us then').waitFor()
    // Alice (the owner) removes carol.
    await alice.getByRole('button', { name: 'Group info' }).click()
    await alice.locator('dialog .members li', { hasText: '@carol' }).getByRole('button', { name: 'Remove' }).click()
    await expect.poll(() => alice.locator('dialog .members li').count()).toBe(2)
    await alice.keyboard.press('Escape')
    await expect.poll(() => alice.locator('dialog[open]').count()).toBe(0)

    const closedLine = 'You are no longer a member of this group'
    const removedView = async (when: string) => {
      await expect.poll(() => carol.locator('[data-testid=composer-closed]').textContent()).toBe(closedLine)
      expect(await carol.getByRole('textbox', { name: 'Message' }).count()).toBe(0)
      expect(await carol.getByRole('button', { name: 'Send' }).count()).toBe(0)
      expect(await carol.locator('.chat-title strong').textContent()).toBe('Saturday trip')
      const item = carol.locator(`button.conv[data-conv="${conv}"]`)
      expect(await item.locator('.conv-title').textContent()).toBe('Saturday trip')
      await expect.poll(() => carol.locator('.system', { hasText: 'removed you' }).textContent()).toBe('Alice Liddell removed you')
      await shoot(carol, `group-removed-member-${when}`)
    }
    await removedView('live')

    // Alice and bob go on; carol does not get it.
    await type(alice, 'Just the two of us now')
    await alice.getByRole('textbox', { name: 'Message' }).press('Enter')
    await expect.poll(() => bubble(alice, 'Just the two of us now').getAttribute('data-status')).toMatch(/sent|delivered|read/)

    // A reload: GET /v1/me/groups no longer lists the group; the app keeps it from the removal notice.
    await carol.reload()
    await bubble(carol, 'Who is in for Saturday?').waitFor()
    await bubble(carol, 'Great, three of us then').waitFor()
    await removedView('after-reload')
    expect(await bubble(carol, 'Just the two of us now').count()).toBe(0)
    // And from the chat list too.
    await carol.goto(parley.http + '/')
    const item = carol.locator(`button.conv[data-conv="${conv}"]`)
    await item.waitFor()
    expect(await item.locator('.conv-title').textContent()).toBe('Saturday trip')
    await item.click()
    await removedView('reopened')
  })

  it('no errors in the pages', () => {
    if (pageErrors.length) console.log(pageErrors.join('\n'))
    expect(pageErrors).toEqual([])
  })
})
