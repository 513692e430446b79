import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ParleyClient, type ConnectionState, type OutgoingMessage } from './client.js'
import { FakeServer, fakeTransport, golden, settle } from './fakes.js'
import { memoryStorage } from './storage.js'
import { presenceSince, type Entry } from './types.js'

function setup(opts: { storage?: ReturnType<typeof memoryStorage>; server?: FakeServer } = {}) {
  const server = opts.server ?? new FakeServer()
  const storage = opts.storage ?? memoryStorage()
  const tr = fakeTransport()
  let r = 0
  const client = new ParleyClient({
    apiUrl: '',
    mqttUrl: 'ws://parley.test:8083/mqtt',
    storage,
    transport: tr.factory,
    fetch: server.fetch,
    random: () => (r = (r + 0.37) % 1),
    reconnectDelay: { min: 1000, max: 8000 },
    retryDelay: { min: 500, max: 4000 },
  })
  const states: ConnectionState[] = []
  const outbox: OutgoingMessage[] = []
  const entries: Entry[] = []
  const errors: Error[] = []
  client.on('state', (s) => states.push(s))
  client.on('outbox', (m) => outbox.push(m))
  client.on('entries', (_i, es) => entries.push(...es))
  client.on('error', (e) => errors.push(e))
  return { server, storage, tr, client, states, outbox, entries, errors }
}

async function online(t: ReturnType<typeof setup>, sessionPresent = false) {
  t.tr.last().accept(sessionPresent)
  await settle(30)
}

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

describe('ParleyClient session and connection', () => {
  it('signs up, keeps the session and a stable device id, and connects with a persistent session', async () => {
    const t = setup()
    await t.client.signUp('alice', 'alice-password', 'Alice')
    const c = t.tr.last()
    expect(c.opts.username).toBe('alice')
    expect(c.opts.password).toBe('pt_alice')
    expect(c.opts.clientId).toMatch(/^alice\/web-[0-9a-f]{8}$/)
    expect(c.opts.sessionExpiry).toBe(7 * 24 * 3600)
    expect(c.opts.will).toEqual({ topic: 'p/alice', payload: '{"user":"alice","status":"offline"}', retain: true, qos: 1 })
    await online(t)
    expect(c.subscribed).toContain('u/alice')
    expect(t.states).toEqual(['connecting', 'online'])

    // A restart of the app: same session, same device id.
    const t2 = setup({ storage: t.storage, server: t.server })
    expect(await t2.client.restore()).toBe(true)
    expect(t2.tr.last().opts.clientId).toBe(c.opts.clientId)
    expect(t2.client.user).toBe('alice')
  })

  it('gives each device slot (browser tab) its own stable client id', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    const first = t.tr.last().opts.clientId
    const server = t.server
    const tr = fakeTransport()
    const tab2 = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage: t.storage, transport: tr.factory, fetch: server.fetch, deviceSlot: 1 })
    await tab2.restore()
    const second = tr.last().opts.clientId
    expect(second).toMatch(/^alice\/web-[0-9a-f]{8}$/)
    expect(second).not.toBe(first)
    const tr3 = fakeTransport()
    const again = new ParleyClient({ apiUrl: '', mqttUrl: 'ws://x/mqtt', storage: t.storage, transport: tr3.factory, fetch: server.fetch, deviceSlot: 1 })
    await again.restore()
    expect(tr3.last().opts.clientId).toBe(second)
  })

  it('reconnects with backoff after losing the connection and catches up', async () => {
    const t = setup()
    await t.client.signIn('bob', 'bob-password')
    await online(t)
    t.server.store('u/bob', {})
    t.tr.last().drop()
    expect(t.client.state).toBe('offline')
    t.server.store('u/bob', {})
    expect(t.tr.conns.length).toBe(1)
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.tr.conns.length).toBe(2)
    await online(t, true)
    // Newest page (seq 1) at the first connection, then seq 2 by catch-up.
    expect(t.entries.map((e) => e.seq)).toEqual([1, 2])
    expect(t.states).toEqual(['connecting', 'online', 'offline', 'connecting', 'online'])
  })

  it('stops reconnecting when the server refuses the token', async () => {
    const t = setup()
    await t.client.signIn('bob', 'bob-password')
    t.tr.last().drop(Object.assign(new Error('Bad username or password'), { code: 0x86 }))
    expect(t.client.state).toBe('unauthorized')
    await vi.advanceTimersByTimeAsync(60_000)
    expect(t.tr.conns.length).toBe(1)
  })

  it('reconnects at once when the network comes back', async () => {
    const t = setup()
    await t.client.signIn('bob', 'bob-password')
    await online(t)
    t.client.networkChanged(false)
    expect(t.client.state).toBe('offline')
    t.client.networkChanged(true)
    expect(t.tr.conns.length).toBe(2)
    expect(t.client.state).toBe('connecting')
  })

  it('waits while the network is down: no attempt until it is back or connect() is called', async () => {
    const t = setup()
    await t.client.signIn('bob', 'bob-password')
    await online(t)
    t.client.networkChanged(false)
    expect(t.client.state).toBe('offline')
    await vi.advanceTimersByTimeAsync(120_000)
    expect(t.tr.conns.length).toBe(1)
    expect(t.client.state).toBe('offline')
    // Said twice, or while a reconnect was scheduled: still waiting.
    t.client.networkChanged(false)
    await vi.advanceTimersByTimeAsync(120_000)
    expect(t.tr.conns.length).toBe(1)
    t.client.networkChanged(true)
    expect(t.tr.conns.length).toBe(2)
    await online(t)

    // Lost on its own (backoff scheduled), then the network goes: the scheduled attempt is dropped.
    t.tr.last().drop()
    expect(t.client.state).toBe('offline')
    t.client.networkChanged(false)
    await vi.advanceTimersByTimeAsync(120_000)
    expect(t.tr.conns.length).toBe(2)
    // An explicit connect() tries at once, and the client reconnects by itself again after that.
    t.client.connect()
    expect(t.tr.conns.length).toBe(3)
    t.tr.last().drop()
    await vi.advanceTimersByTimeAsync(8000)
    expect(t.tr.conns.length).toBe(4)
    // Online while connected is nothing to do.
    await online(t)
    t.client.networkChanged(true)
    expect(t.tr.conns.length).toBe(4)
    expect(t.client.state).toBe('online')
  })
})

describe('ParleyClient sending', () => {
  it('publishes with a cid and marks the message sent on PUBACK 0x00', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    await online(t)
    const m = t.client.send('u/bob', { text: 'hi bob' })
    await settle()
    const [p] = t.tr.last().messages()
    expect(p.topic).toBe('u/bob')
    expect(p.qos).toBe(1)
    expect(JSON.parse(p.payload)).toEqual({ cid: m.cid, body: { text: 'hi bob' } })
    p.resolve(0)
    await settle()
    expect(t.outbox.map((o) => o.status)).toEqual(['queued', 'sending', 'sent'])
    expect(t.client.outbox).toEqual([])
  })

  it('queues while offline and sends in order on reconnect', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    t.client.send('u/bob', { text: 'one' })
    t.client.send('u/bob', { text: 'two' })
    await settle()
    expect(t.tr.last().published).toEqual([])
    await online(t)
    const c = t.tr.last()
    expect(c.messages().map((p) => JSON.parse(p.payload).body.text)).toEqual(['one'])
    c.messages()[0].resolve(0)
    await settle()
    expect(c.messages().map((p) => JSON.parse(p.payload).body.text)).toEqual(['one', 'two'])
  })

  it('keeps the outbox across a restart', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    const m = t.client.send('u/bob', { text: 'survives' })
    const t2 = setup({ storage: t.storage, server: t.server })
    await t2.client.restore()
    expect(t2.client.outbox.map((o) => o.cid)).toEqual([m.cid])
    await online(t2)
    expect(JSON.parse(t2.tr.last().messages()[0].payload).cid).toBe(m.cid)
  })

  it('retries 0x97 and 0x80 with backoff and the same cid', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    await online(t)
    const m = t.client.send('u/bob', { text: 'retry me' })
    await settle()
    const c = t.tr.last()
    c.messages()[0].resolve(0x97)
    await settle()
    expect(t.client.outbox[0]).toMatchObject({ status: 'queued', code: 0x97, reason: 'sending too fast' })
    expect(c.messages().length).toBe(1)
    await vi.advanceTimersByTimeAsync(600)
    expect(c.messages().length).toBe(2)
    c.messages()[1].resolve(0x80)
    await settle()
    await vi.advanceTimersByTimeAsync(1100)
    expect(c.messages().length).toBe(3)
    c.messages()[2].resolve(0)
    await settle()
    expect(c.messages().every((p) => JSON.parse(p.payload).cid === m.cid)).toBe(true)
    expect(t.outbox[t.outbox.length - 1].status).toBe('sent')
  })

  it('fails a message refused for good, with the reason, and goes on with the next', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    await online(t)
    t.client.send('u/nobody', { text: 'to no one' })
    t.client.send('u/bob', { text: 'next' })
    await settle()
    const c = t.tr.last()
    c.messages()[0].resolve(0x90)
    await settle()
    expect(t.client.outbox[0]).toMatchObject({ status: 'failed', code: 0x90, reason: 'no such user or group' })
    expect(c.messages().length).toBe(2)
    expect(c.messages()[1].topic).toBe('u/bob')
    // Retry on demand.
    c.messages()[1].resolve(0)
    await settle()
    t.client.retry(t.client.outbox[0].cid)
    await settle()
    expect(c.messages().length).toBe(3)
  })

  it('publishes again after the connection drops before the PUBACK', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    await online(t)
    const m = t.client.send('u/bob', { text: 'in flight' })
    await settle()
    t.tr.last().drop()
    await settle()
    expect(t.client.outbox[0].status).toBe('queued')
    await vi.advanceTimersByTimeAsync(1000)
    await online(t)
    const again = t.tr.last().messages()
    expect(again.length).toBe(1)
    expect(JSON.parse(again[0].payload).cid).toBe(m.cid)
  })

  it('publishes again when no PUBACK comes in time', async () => {
    const t = setup()
    await t.client.signIn('alice', 'pw-123456')
    await online(t)
    t.client.send('u/bob', { text: 'slow' })
    await settle()
    await vi.advanceTimersByTimeAsync(15_000)
    expect(t.tr.conns[0].closed).toBe(true)
    await vi.advanceTimersByTimeAsync(1000)
    await online(t)
    expect(t.tr.last().messages().length).toBe(1)
  })
})

describe('ParleyClient inboxes', () => {
  it('reads the newest page first, then delivers live entries in order without repeats', async () => {
    const t = setup()
    const server = t.server
    server.store('u/bob', {})
    server.store('u/bob', {})
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    const c = t.tr.last()
    const e3 = server.store('u/bob', {})
    const e4 = server.store('u/bob', {})
    c.deliver(e3)
    c.deliver(e3)
    c.deliver(e4)
    await settle()
    expect(t.entries.map((e) => e.seq)).toEqual([1, 2, 3, 4])
  })

  it('fetches a gap', async () => {
    const t = setup()
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    const c = t.tr.last()
    t.server.store('u/bob', {})
    t.server.store('u/bob', {})
    c.deliver(t.server.store('u/bob', {}))
    await settle(40)
    expect(t.entries.map((e) => e.seq)).toEqual([1, 2, 3])
    expect(t.server.requests.some((r) => r.includes('inbox=u%2Fbob&after=0'))).toBe(true)
  })

  it('reports typing notices by conversation', async () => {
    const t = setup()
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    const typing: string[] = []
    t.client.on('typing', (conv, from) => typing.push(`${conv} ${from}`))
    t.tr.last().deliver({ id: '', inbox: 'u/bob', seq: 0, from: 'alice', to: 'bob', ts: 1, type: 'typing' })
    expect(typing).toEqual(['u/alice alice'])
  })

  it('sends typing at most every few seconds, QoS 0', async () => {
    const t = setup()
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    t.client.typing('u/alice')
    t.client.typing('u/alice')
    const typing = t.tr.last().published.filter((p) => p.payload === '{"type":"typing"}')
    expect(typing.map((p) => [p.topic, p.qos])).toEqual([['u/alice', 0]])
  })
})

describe('ParleyClient read markers, presence and groups', () => {
  it('sends read markers; one refused is reported, and later ones still go', async () => {
    const t = setup()
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    t.client.markRead('u/bob', 7, 'alice')
    const c = t.tr.last()
    const reads = () => c.published.filter((x) => x.payload.includes('"read"'))
    const [p] = reads()
    expect(p.topic).toBe('u/bob')
    expect(JSON.parse(p.payload)).toEqual({ type: 'read', inbox: 'u/bob', seq: 7, with: 'alice' })
    p.resolve(0x99)
    await settle()
    expect(t.errors.map((e) => e.message)).toEqual(['read marker on u/bob refused: the server refused the message format'])
    t.client.markRead('u/bob', 8)
    expect(reads().map((x) => JSON.parse(x.payload).seq)).toEqual([7, 8])
  })

  it('sends a group read marker without inbox', async () => {
    const t = setup()
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    t.client.markRead('g/team', 12)
    const [p] = t.tr.last().published.filter((x) => x.payload.includes('"read"'))
    expect(p.topic).toBe('g/team')
    expect(JSON.parse(p.payload)).toEqual({ type: 'read', seq: 12 })
    p.resolve(0)
    await settle()
    expect(t.errors).toEqual([])
  })

  it('follows presence; a refused user is hidden', async () => {
    const t = setup()
    await t.client.signIn('bob', 'pw-123456')
    t.tr.last().suback['p/carol'] = 0x87
    await online(t)
    const seen: string[] = []
    t.client.on('presence', (p) => seen.push(`${p.user} ${p.status} ${presenceSince(p) ?? ''}`))
    t.client.watchPresence(['alice', 'carol'])
    await settle(40)
    expect(t.tr.last().subscribed).toEqual(expect.arrayContaining(['p/alice', 'p/carol']))
    expect(seen).toEqual(['alice offline 42', 'carol offline 42', 'carol hidden '])
    t.tr.last().h.onMessage('p/alice', '{"user":"alice","status":"online","ts":77}')
    t.tr.last().h.onMessage('p/alice', '{"user":"alice","status":"away","ts":78}')
    expect(seen.slice(3)).toEqual(['alice online 77', 'alice away 78'])
    expect(t.client.presence).toEqual([{ user: 'alice', status: 'away', ts: 78 }, { user: 'carol', status: 'hidden' }])
    // Away and back, on the user's own p/{user}.
    t.client.setPresence('away')
    const own = t.tr.last().published.filter((p) => p.topic === 'p/bob')
    expect(own.map((p) => p.payload)).toEqual(['{"status":"away"}'])
  })

  it('probes nothing: a failed GET /v1/presence or /v1/me/groups turns no feature off', async () => {
    const server = new FakeServer()
    const base = server.fetch
    let fail = true
    server.fetch = async (url, init) => {
      if (fail && (url.startsWith('/v1/presence') || url.endsWith('/v1/me/groups'))) {
        return { status: 404, ok: false, text: async () => '{"error":"no such endpoint"}' }
      }
      return base(url, init)
    }
    const t = setup({ server })
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    t.client.watchPresence(['alice'])
    await settle(40)
    // Subscribed all the same: the retained state tells.
    expect(t.tr.last().subscribed).toContain('p/alice')
    t.tr.last().h.onMessage('p/alice', '{"user":"alice","status":"online","ts":77}')
    expect(t.client.presence).toEqual([{ user: 'alice', status: 'online', ts: 77 }])
    t.client.setPresence('away')
    expect(t.tr.last().published.filter((p) => p.topic === 'p/bob').length).toBe(1)
    // The groups are read again on the next connection.
    fail = false
    server.groups = (golden('api/groups.json') as { groups: unknown[] }).groups
    t.tr.last().drop()
    await vi.advanceTimersByTimeAsync(1000)
    await online(t)
    expect(t.client.groups?.map((g) => g.name)).toEqual(['Road trip'])
    expect('caps' in t.client).toBe(false)
  })

  it('follows the groups the server lists', async () => {
    const server = new FakeServer()
    server.groups = (golden('api/groups.json') as { groups: unknown[] }).groups
    const t = setup({ server })
    const groups: string[] = []
    t.client.on('groups', (gs) => groups.push(...gs.map((g) => g.name)))
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    await settle(40)
    expect(groups).toEqual(['Road trip'])
    expect(t.tr.last().subscribed).toContain('g/k3x7q2m9wz')
  })

  it('follows a group from the notices in its inbox, without polling the group list', async () => {
    const t = setup()
    await t.client.signIn('bob', 'pw-123456')
    await online(t)
    const groupReads = () => t.server.requests.filter((r) => r.endsWith('/v1/me/groups')).length
    expect(groupReads()).toBe(1) // once per connection
    await vi.advanceTimersByTimeAsync(120_000)
    expect(groupReads()).toBe(1)
    // Added: the notice names the group; it is followed at once.
    t.server.groups = [{ id: 'team', name: 'Team', owner: 'alice', history: 'join', members: ['alice', 'bob'], roles: { alice: 'owner' }, last_seq: 1, read_seq: 0, created_at: '' }]
    t.tr.last().deliver(t.server.store('u/bob', { type: 'member_added', from: 'alice', by: 'alice', user: 'bob', for: 'g/team', name: 'Team' } as Partial<Entry>))
    await settle(40)
    expect(t.tr.last().subscribed).toContain('g/team')
    expect(t.client.inboxes.map((i) => i.inbox)).toEqual(['u/bob', 'g/team'])
    expect(groupReads()).toBe(2)
    // A rename in the group: the list is read again (once for a burst).
    const c = t.tr.last()
    c.deliver(t.server.store('g/team', { type: 'group_created', from: 'alice', to: 'team', by: 'alice', name: 'Team' } as Partial<Entry>))
    await settle(40)
    c.deliver(t.server.store('g/team', { type: 'renamed', from: 'alice', to: 'team', by: 'alice', name: 'A' } as Partial<Entry>))
    c.deliver(t.server.store('g/team', { type: 'renamed', from: 'alice', to: 'team', by: 'alice', name: 'B' } as Partial<Entry>))
    c.deliver(t.server.store('g/team', { type: 'renamed', from: 'alice', to: 'team', by: 'alice', name: 'C' } as Partial<Entry>))
    await settle(60)
    expect(groupReads()).toBe(5) // one for the first rename, one more for the two during it
    // Removed: the notice ends following it.
    t.server.groups = []
    c.deliver(t.server.store('u/bob', { type: 'member_removed', from: 'alice', by: 'alice', user: 'bob', for: 'g/team', name: 'C' } as Partial<Entry>))
    await settle(40)
    expect(t.client.inboxes.map((i) => i.inbox)).toEqual(['u/bob'])
    expect(t.client.groups).toEqual([])
    await vi.advanceTimersByTimeAsync(120_000)
    const n = groupReads()
    await vi.advanceTimersByTimeAsync(120_000)
    expect(groupReads()).toBe(n)
  })
})
