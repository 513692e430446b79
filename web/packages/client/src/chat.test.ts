import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ChatStore } from './chat.js'
import { ParleyClient } from './client.js'
import { FakeServer, fakeTransport, settle } from './fakes.js'
import { memoryStorage } from './storage.js'
import type { Entry } from './types.js'

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

  it('takes read cursors and unread counts from the server, and keeps none on the device', async () => {
    const server = new FakeServer()
    const old = server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'old' } })
    const unread = server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'new' } })
    server.store('u/alice', { from: 'carol', to: 'alice', body: { text: 'hello' } })
    server.conversations = [
      { type: 'direct', peer: 'carol', inbox: 'u/alice', last: server.inboxes.get('u/alice')![2], unread: 1, read_seq: 0 },
      { type: 'direct', peer: 'bob', inbox: 'u/alice', last: unread, unread: 1, read_seq: old.seq },
    ]
    const storage = memoryStorage()
    const tr = fakeTransport()
    const client = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr.factory, fetch: server.fetch })
    const store = new ChatStore(client, storage)
    await client.signIn('alice', 'pw-123456')
    tr.last().accept(false)
    await settle(40)
    expect(store.getState().ready).toBe(true)
    expect(store.getState().conversations.map((c) => [c.key, c.unread, c.last?.text])).toEqual([
      ['u/carol', 1, 'hello'],
      ['u/bob', 1, 'new'],
    ])
    // A second device of alice read bob's messages: the server echoes the marker.
    tr.last().deliver(server.store('u/alice', { type: 'read', from: 'alice', to: 'alice', for: 'u/alice', with: 'bob', read_seq: unread.seq }))
    await settle()
    expect(store.getState().conversations.map((c) => c.unread)).toEqual([1, 0])
    // Opening carol's chat marks it read on the server.
    store.setOpen('u/carol')
    await settle()
    expect(store.getState().conversations.map((c) => c.unread)).toEqual([0, 0])
    expect(tr.last().published.filter((p) => p.payload.includes('"read"')).map((p) => JSON.parse(p.payload))).toEqual([
      { type: 'read', inbox: 'u/alice', seq: 3, with: 'carol' },
    ])
    expect([...storage.data.keys()].filter((k) => k.includes('read'))).toEqual([])
  })

  it("adds what arrives after the chat list to the server's unread count", async () => {
    const server = new FakeServer()
    // 150 messages from bob, none read: the newest page holds 100 of them.
    for (let i = 1; i <= 150; i++) server.store('u/alice', { from: 'bob', to: 'alice', body: { text: `m${i}` } })
    const list = server.inboxes.get('u/alice')!
    server.conversations = [{ type: 'direct', peer: 'bob', inbox: 'u/alice', last: list[149], unread: 150, read_seq: 0 }]
    const storage = memoryStorage()
    const tr = fakeTransport()
    const client = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr.factory, fetch: server.fetch })
    const store = new ChatStore(client, storage)
    await client.signIn('alice', 'pw-123456')
    tr.last().accept(false)
    await settle(40)
    expect(store.getState().conversations.map((c) => c.unread)).toEqual([150])
    tr.last().deliver(server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'one more' } }))
    await settle()
    expect(store.getState().conversations.map((c) => c.unread)).toEqual([151])
  })

  it('shows what the client has when it is created after sign-in', async () => {
    const server = new FakeServer()
    server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'before the store' } })
    server.groups = [{ id: 'team', name: 'Team', owner: 'alice', history: 'join', members: ['alice', 'carol'], roles: { alice: 'owner' }, last_seq: 1, read_seq: 1, created_at: '' }]
    server.store('g/team', { type: 'group_created', from: 'alice', to: 'team', by: 'alice', name: 'Team' } as Partial<Entry>)
    server.conversations = [{ type: 'direct', peer: 'bob', inbox: 'u/alice', last: server.inboxes.get('u/alice')![0], unread: 1, read_seq: 0 }]
    const storage = memoryStorage()
    const tr = fakeTransport()
    const client = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr.factory, fetch: server.fetch })
    await client.signIn('alice', 'pw-123456')
    tr.last().accept(false)
    await settle(40)
    tr.last().h.onMessage('p/dave', '{"user":"dave","status":"online","ts":5}')
    client.send('u/carol', { text: 'queued' })
    // The store comes now: it reads the newest pages, the chat list, groups and presence itself.
    const store = new ChatStore(client, storage)
    await settle(40)
    const s = store.getState()
    expect(s.ready).toBe(true)
    expect(s.user).toBe('alice')
    expect(s.connection).toBe('online')
    expect(s.conversations.map((c) => [c.key, c.title, c.unread, c.last?.text ?? ''])).toEqual([
      ['u/carol', 'Carol', 0, 'queued'],
      ['g/team', 'Team', 0, 'You created the group “Team”'],
      ['u/bob', 'Bob', 1, 'before the store'],
    ])
    expect(Object.keys(s.groups)).toEqual(['team'])
    expect(s.presence.dave?.status).toBe('online')
    // And it goes on live.
    tr.last().deliver(server.store('u/alice', { from: 'bob', to: 'alice', body: { text: 'after' } }))
    await settle()
    expect(store.getState().messages['u/bob'].map((m) => m.text)).toEqual(['before the store', 'after'])
  })

  it('keeps a group the user was removed from, read-only and by name, also after a restart', async () => {
    const server = new FakeServer()
    const team = { id: 'team', name: 'Team', owner: 'carol', history: 'join', members: ['alice', 'carol'], roles: { carol: 'owner' }, last_seq: 2, read_seq: 0, created_at: '' }
    server.groups = [team]
    server.store('g/team', { type: 'group_created', from: 'carol', to: 'team', by: 'carol', name: 'Team' } as Partial<Entry>)
    server.store('g/team', { from: 'carol', to: 'team', body: { text: 'welcome' } })
    const storage = memoryStorage()
    const tr = fakeTransport()
    const client = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr.factory, fetch: server.fetch })
    const store = new ChatStore(client, storage)
    await client.signIn('alice', 'pw-123456')
    tr.last().accept(false)
    await settle(40)
    expect(store.getState().conversations.map((c) => [c.key, c.title, c.former])).toEqual([['g/team', 'Team', undefined]])
    // Carol renames the group and removes alice: the removal in the group, the notice in alice's inbox.
    const c = tr.last()
    c.deliver(server.store('g/team', { type: 'renamed', from: 'carol', to: 'team', by: 'carol', name: 'Road trip' } as Partial<Entry>))
    c.deliver(server.store('g/team', { type: 'member_removed', from: 'carol', to: 'team', by: 'carol', user: 'alice' } as Partial<Entry>))
    server.groups = []
    c.deliver(server.store('u/alice', { type: 'member_removed', from: 'carol', to: 'alice', by: 'carol', user: 'alice', for: 'g/team', name: 'Road trip' } as Partial<Entry>))
    await settle(60)
    const view = (st: ChatStore) =>
      st.getState().conversations.map((x) => [x.key, x.title, x.former, x.unread, (st.getState().messages[x.key] ?? []).map((m) => m.text)])
    const removed = [['g/team', 'Road trip', 'removed', 0, ['Carol created the group “Team”', 'welcome', 'Carol renamed the group to “Road trip”', 'Carol removed you']]]
    expect(view(store)).toEqual(removed)
    expect(client.inboxes.map((i) => i.inbox)).toEqual(['u/alice'])

    // A restart: the group list no longer has it, the notice and the history tell.
    client.disconnect()
    const tr2 = fakeTransport()
    const client2 = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr2.factory, fetch: server.fetch })
    const store2 = new ChatStore(client2, storage)
    await client2.restore()
    tr2.last().accept(true)
    await settle(80)
    expect(view(store2)).toEqual(removed)
    expect(tr2.last().subscribed).not.toContain('g/team')

    // Even when the notice is no longer in the newest page of the inbox (the device kept it).
    for (let i = 0; i < 120; i++) server.store('u/alice', { from: 'bob', to: 'alice', body: { text: `m${i}` } })
    const tr3 = fakeTransport()
    const client3 = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage, transport: tr3.factory, fetch: server.fetch })
    const store3 = new ChatStore(client3, storage)
    await client3.restore()
    tr3.last().accept(true)
    await settle(80)
    expect(view(store3).filter((x) => x[0] === 'g/team')).toEqual(removed)

    // Added back: a member again.
    server.groups = [{ ...team, name: 'Road trip' }]
    tr3.last().deliver(server.store('u/alice', { type: 'member_added', from: 'carol', to: 'alice', by: 'carol', user: 'alice', for: 'g/team', name: 'Road trip' } as Partial<Entry>))
    await settle(80)
    const back = store3.getState().conversations.find((x) => x.key === 'g/team')!
    expect([back.title, back.former]).toEqual(['Road trip', undefined])
    expect(tr3.last().subscribed).toContain('g/team')
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
