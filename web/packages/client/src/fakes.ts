// Fakes for the SDK's tests: an in-memory Parley (inboxes and the history
// API), a scripted Transport, and the golden fixtures of the wire contract.
// Not part of the SDK's exports.
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Transport, TransportFactory, TransportHandlers, TransportOptions } from './transport.js'
import type { Entry } from './types.js'

export class FakeServer {
  inboxes = new Map<string, Entry[]>()
  requests: string[] = []
  failNext = 0
  /** GET /v1/me/conversations answers these (as on the wire). */
  conversations: unknown[] = []
  /** GET /v1/me/groups answers these (as on the wire). */
  groups: unknown[] = []
  private n = 0

  /** Stores an entry in an inbox with the next seq and returns it. */
  store(inbox: string, e: Partial<Entry>): Entry {
    const list = this.inboxes.get(inbox) ?? []
    this.inboxes.set(inbox, list)
    const entry: Entry = {
      id: e.id ?? `id-${++this.n}`,
      inbox,
      seq: list.length + 1,
      from: 'alice',
      to: 'bob',
      ts: 1_700_000_000_000 + this.n * 1000,
      type: 'msg',
      ...e,
    } as Entry
    entry.seq = list.length + 1
    list.push(entry)
    return entry
  }

  fetch = async (url: string, init?: { method?: string; body?: string }) => {
    this.requests.push(`${init?.method ?? 'GET'} ${url}`)
    const json = (status: number, v: unknown) => ({ status, ok: status < 300, text: async () => JSON.stringify(v) })
    if (this.failNext > 0) {
      this.failNext--
      return json(503, { error: 'store unavailable, try again' })
    }
    const u = new URL(url, 'http://parley.test')
    if (u.pathname === '/v1/messages') {
      const list = this.inboxes.get(u.searchParams.get('inbox')!) ?? []
      const limit = Number(u.searchParams.get('limit') ?? 100)
      const after = u.searchParams.get('after')
      const before = u.searchParams.get('before')
      let page: Entry[]
      let more: boolean
      if (after !== null) {
        const rest = list.filter((e) => e.seq > Number(after))
        page = rest.slice(0, limit)
        more = rest.length > limit
      } else {
        const below = before !== null ? list.filter((e) => e.seq < Number(before)) : list
        page = below.slice(-limit)
        more = below.length > limit
      }
      return json(200, { inbox: u.searchParams.get('inbox'), entries: page, more })
    }
    if (u.pathname === '/v1/users' && init?.method === 'POST') {
      const b = JSON.parse(init.body!)
      return json(201, { id: b.id, name: b.name, token: `pt_${b.id}` })
    }
    if (u.pathname === '/v1/tokens' && init?.method === 'POST') {
      return json(200, { token: 'pt_x' })
    }
    if (u.pathname === '/v1/me/conversations') return json(200, { conversations: this.conversations })
    if (u.pathname === '/v1/me/groups') return json(200, { groups: this.groups })
    if (u.pathname === '/v1/presence') {
      const users = u.searchParams.get('users')!.split(',')
      return json(200, { users: users.map((user) => ({ user, status: 'offline', last_seen: 42 })) })
    }
    if (u.pathname.startsWith('/v1/users/')) {
      const id = u.pathname.slice('/v1/users/'.length)
      return json(200, { id, name: id[0].toUpperCase() + id.slice(1) })
    }
    return json(404, { error: 'no such endpoint' })
  }
}

export interface Published {
  topic: string
  payload: string
  qos: 0 | 1
  retain?: boolean
  resolve(code: number): void
  reject(err: Error): void
}

export class FakeConnection implements Transport {
  published: Published[] = []
  subscribed: string[] = []
  closed = false
  /** SUBACK codes by topic (default: granted QoS 1). */
  suback: Record<string, number> = {}

  constructor(
    readonly opts: TransportOptions,
    readonly h: TransportHandlers,
  ) {}

  publish(topic: string, payload: string, o: { qos: 0 | 1; retain?: boolean }): Promise<number> {
    if (this.closed) return Promise.reject(new Error('connection lost'))
    return new Promise((resolve, reject) => {
      this.published.push({ topic, payload, qos: o.qos, retain: o.retain, resolve, reject })
      if (o.qos === 0) resolve(0)
    })
  }

  async subscribe(topics: string[], qos: 0 | 1): Promise<number[]> {
    this.subscribed.push(...topics)
    return topics.map((t) => this.suback[t] ?? (t.startsWith('p/') ? 0 : qos))
  }

  async unsubscribe(): Promise<void> {}

  close(): void {
    this.drop()
  }

  /** Accepts the connection (CONNACK 0). */
  accept(sessionPresent = false) {
    this.h.onConnect(sessionPresent)
  }

  /** Loses the connection: pending publishes fail. */
  drop(err?: Error & { code?: number }) {
    if (this.closed) return
    this.closed = true
    for (const p of this.published) p.reject(new Error('connection lost'))
    this.h.onClose(err)
  }

  /** Delivers an entry as the broker would. */
  deliver(e: Entry) {
    this.h.onMessage(e.inbox, JSON.stringify(e))
  }

  /** The message publishes (not typing or read markers) so far. */
  messages(): Published[] {
    return this.published.filter((p) => p.qos === 1 && !p.payload.includes('"type"'))
  }
}

export function fakeTransport(): { factory: TransportFactory; conns: FakeConnection[]; last(): FakeConnection } {
  const conns: FakeConnection[] = []
  return {
    conns,
    factory: (opts, h) => {
      const c = new FakeConnection(opts, h)
      conns.push(c)
      return c
    },
    last: () => conns[conns.length - 1],
  }
}

/** Lets pending promises and microtasks run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve()
}

/** The golden fixtures the Go tests write: protocol/testdata/golden in the repository. */
export const goldenDir = fileURLToPath(new URL('../../../../protocol/testdata/golden/', import.meta.url))

/** A golden fixture, parsed: golden('api/groups.json'). */
export function golden(name: string): unknown {
  return JSON.parse(readFileSync(goldenDir + name, 'utf8'))
}

/** The names of a golden folder's files: goldenFiles('entries'). */
export function goldenFiles(dir: string): string[] {
  return readdirSync(goldenDir + dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
}
