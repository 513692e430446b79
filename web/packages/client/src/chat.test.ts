import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ChatStore } from './chat.js'
import { ParleyClient } from './client.js'
import { FakeServer, fakeTransport, settle } from './fakes.js'
import { memoryStorage } from './storage.js'

async function setup(user = 'alice') {
  const server = new FakeServer()
  const storage = memoryStorage()
  const tr = fakeTransport()
  const client = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr.factory, fetch: server.fetch })
  const store = new ChatStore(client, storage)
  await client.signIn(user, 'pw-123456')
  tr.last().accept(false)
  await settle(40)
  return { server, storage, tr, client, store, conn: () => tr.last(), s: () => store.getState() }
}

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

describe('ChatStore', () => {
  it('takes a message from pending through sent, stored, delivered and read under one key', async () => {
    const t = await setup()
    expect(t.s().ready).toBe(true)
    t.store.send('u/bob', '  hello bob  ')
    await settle()
    let [m] = t.s().messages['u/bob']
    expect(m).toMatchObject({ text: 'hello bob', mine: true, status: 'sending' })
    const key = m.key
    const p = t.conn().messages()[0]
    p.resolve(0)
    await settle()
    expect(t.s().messages['u/bob'][0].status).toBe('sent')
    const cid = JSON.parse(p.payload).cid
    const copy = t.server.store('u/alice', { from: 'alice', to: 'bob', cid, body: { text: 'hello bob' } })
    t.conn().deliver(copy)
    await settle()
    ;[m] = t.s().messages['u/bob']
    expect(m).toMatchObject({ key, id: copy.id, seq: 1, status: 'sent' })
    t.conn().deliver(t.server.store('u/alice', { type: 'receipt', from: 'bob', to: 'alice', status: 'delivered', by: 'bob', ids: [copy.id] }))
    await settle()
    expect(t.s().messages['u/bob'][0].status).toBe('delivered')
    t.conn().deliver(t.server.store('u/alice', { type: 'receipt', from: 'bob', to: 'alice', status: 'read', by: 'bob', ids: [copy.id] }))
    await settle()
    expect(t.s().messages['u/bob'][0].status).toBe('read')
    // A late delivered receipt does not take the read tick back.
    t.conn().deliver(t.server.store('u/alice', { type: 'receipt', from: 'bob', to: 'alice', status: 'delivered', by: 'bob', ids: [copy.id] }))
    await settle()
    expect(t.s().messages['u/bob'][0].status).toBe('read')
  })

  it('counts unread messages per conversation and clears them when the conversation is open', async () => {
    const t = await setup()
    t.conn().deliver(t.server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'one' } }))
    t.conn().deliver(t.server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'two' } }))
    t.conn().deliver(t.server.store('u/alice', { from: 'carol', to: 'alice', body: { text: 'hey' } }))
    await settle()
    const convs = t.s().conversations
    expect(convs.map((c) => [c.key, c.unread, c.last?.text])).toEqual([
      ['u/carol', 1, 'hey'],
      ['u/bob', 2, 'two'],
    ])
    expect(convs[1].title).toBe('Bob')
    t.store.setOpen('u/bob')
    await settle()
    expect(t.s().conversations.find((c) => c.key === 'u/bob')!.unread).toBe(0)
    const read = t.conn().published.filter((p) => p.payload.includes('"read"'))
    expect(JSON.parse(read[0].payload)).toEqual({ type: 'read', inbox: 'u/alice', seq: 2, with: 'bob' })
    // Messages arriving in the open conversation are read at once.
    t.conn().deliver(t.server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'three' } }))
    await settle()
    expect(t.s().conversations.find((c) => c.key === 'u/bob')!.unread).toBe(0)
    // ...unless the app is in the background.
    t.store.setVisible(false)
    t.conn().deliver(t.server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'four' } }))
    await settle()
    expect(t.s().conversations.find((c) => c.key === 'u/bob')!.unread).toBe(1)
  })

  it("takes read markers echoed from the user's other devices", async () => {
    const t = await setup()
    t.conn().deliver(t.server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'one' } }))
    t.conn().deliver(t.server.store('u/alice', { from: 'carol', to: 'alice', body: { text: 'two' } }))
    await settle()
    expect(t.s().conversations.map((c) => c.unread)).toEqual([1, 1])
    t.conn().deliver(t.server.store('u/alice', { type: 'read', from: 'alice', to: 'alice', for: 'u/alice', with: 'bob', read_seq: 1 }))
    await settle()
    expect(t.s().conversations.map((c) => [c.key, c.unread])).toEqual([
      ['u/carol', 1],
      ['u/bob', 0],
    ])
  })

  it('ticks a group message delivered only when every other member has it', async () => {
    const t = await setup()
    t.store.send('g/team', 'hello team')
    await settle()
    const p = t.conn().messages()[0]
    p.resolve(0)
    await settle()
    const cid = JSON.parse(p.payload).cid
    t.client.watchInbox('g/team')
    await settle(30)
    t.conn().deliver(t.server.store('g/team', { from: 'alice', to: 'team', cid, body: { text: 'hello team' } }))
    await settle()
    const id = t.s().messages['g/team'][0].id
    const receipt = (count: number) => t.server.store('u/alice', { type: 'receipt', from: '', to: 'alice', status: 'delivered', for: 'g/team', ids: [id!], count, of: 2 })
    t.conn().deliver(receipt(1))
    await settle()
    expect(t.s().messages['g/team'][0].status).toBe('sent')
    t.conn().deliver(receipt(2))
    await settle()
    expect(t.s().messages['g/team'][0].status).toBe('delivered')
  })

  it('counts what was in the inbox before this device first looked as read', async () => {
    const server = new FakeServer()
    server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'old' } })
    const storage = memoryStorage()
    const tr = fakeTransport()
    const client = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr.factory, fetch: server.fetch })
    const store = new ChatStore(client, storage)
    await client.signIn('alice', 'pw-123456')
    tr.last().accept(false)
    await settle(40)
    expect(store.getState().conversations.map((c) => [c.key, c.unread, c.last?.text])).toEqual([['u/bob', 0, 'old']])
  })

  it('shows who is typing until they send or stop', async () => {
    const t = await setup()
    t.conn().deliver({ id: '', inbox: 'u/alice', seq: 0, from: 'bob', to: 'alice', ts: 1, type: 'typing' })
    await settle()
    expect(t.s().typing['u/bob']).toEqual(['bob'])
    t.conn().deliver(t.server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'done' } }))
    await settle()
    expect(t.s().typing['u/bob']).toBeUndefined()
    t.conn().deliver({ id: '', inbox: 'u/alice', seq: 0, from: 'bob', to: 'alice', ts: 2, type: 'typing' })
    await settle()
    expect(t.s().typing['u/bob']).toEqual(['bob'])
    await vi.advanceTimersByTimeAsync(6500)
    expect(t.s().typing['u/bob']).toBeUndefined()
  })

  it('loads older history of a conversation page by page', async () => {
    const server = new FakeServer()
    for (let i = 1; i <= 250; i++) {
      server.store('u/alice', { from: i % 2 ? 'bob' : 'carol', to: 'alice', body: { text: `m${i}` } })
    }
    const storage = memoryStorage()
    const tr = fakeTransport()
    const client = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr.factory, fetch: server.fetch })
    const store = new ChatStore(client, storage)
    await client.signIn('alice', 'pw-123456')
    tr.last().accept(false)
    await settle(40)
    expect(store.getState().messages['u/bob'].length).toBe(50) // of the newest 100
    store.setOpen('u/bob')
    await store.loadOlder('u/bob')
    await settle()
    const bob = store.getState().messages['u/bob']
    expect(bob.length).toBe(125)
    expect(bob[0].text).toBe('m1')
    expect(bob.map((m) => m.seq)).toEqual([...bob.map((m) => m.seq!)].sort((a, b) => a - b))
    expect(store.getState().history['u/bob'].more).toBe(false)
  })

  it('marks a message failed with the reason and can discard it', async () => {
    const t = await setup()
    t.store.send('u/nobody', 'hello?')
    await settle()
    t.conn().messages()[0].resolve(0x90)
    await settle()
    const [m] = t.s().messages['u/nobody']
    expect(m).toMatchObject({ status: 'failed', reason: 'no such user or group' })
    t.store.discard(m)
    await settle()
    expect(t.s().messages['u/nobody']).toEqual([])
  })
})
