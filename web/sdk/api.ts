import type { ConversationSummary, Entry, Group, HistoryPage, InboxTopic, Presence, User } from './types'

type Fetch = (input: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<{
  status: number
  ok: boolean
  text(): Promise<string>
}>

/** An HTTP API error: the status and the server's `{"error"}` text. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/**
 * The server does not have this feature (yet): the route answered 404 "no
 * such endpoint" or 405. Features that land on the server later (groups,
 * conversations, presence) report this until they do.
 */
export class NotSupportedError extends ApiError {
  constructor(route: string) {
    super(404, `not supported by this server: ${route}`)
    this.name = 'NotSupportedError'
  }
}

export interface SignedIn {
  id: string
  name?: string
  token: string
}

/** Parley's HTTP JSON API (docs/protocol.md, HTTP API). */
export class ParleyApi {
  /** The bearer token of authenticated routes. */
  token: string | undefined
  private readonly fetch: Fetch

  /** baseUrl: "" for the page's own origin, or "http://host:8080". */
  constructor(
    readonly baseUrl: string,
    fetchImpl?: Fetch,
  ) {
    const f = fetchImpl ?? (globalThis.fetch as unknown as Fetch | undefined)
    if (!f) throw new Error('parley: no fetch: pass one to ParleyApi')
    this.fetch = (input, init) => f(input, init)
  }

  private async call<T>(method: string, path: string, body?: unknown, auth = true): Promise<T> {
    const headers: Record<string, string> = {}
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`
    let res
    try {
      res = await this.fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      })
    } catch (err) {
      throw new ApiError(0, `cannot reach the server (${(err as Error).message})`)
    }
    const text = await res.text()
    let data: any = undefined
    if (text) {
      try {
        data = JSON.parse(text)
      } catch {
        data = undefined
      }
    }
    if (!res.ok) {
      const msg = typeof data?.error === 'string' ? data.error : `HTTP ${res.status}`
      if (res.status === 405 || (res.status === 404 && msg === 'no such endpoint')) {
        throw new NotSupportedError(`${method} ${path.split('?')[0]}`)
      }
      throw new ApiError(res.status, msg)
    }
    return data as T
  }

  /** POST /v1/users: creates an account and returns its first token. */
  async signUp(id: string, password: string, name: string): Promise<SignedIn> {
    const r = await this.call<SignedIn>('POST', '/v1/users', { id, password, name }, false)
    this.token = r.token
    return r
  }

  /** POST /v1/tokens: signs in. */
  async signIn(id: string, password: string): Promise<SignedIn> {
    const r = await this.call<{ token: string }>('POST', '/v1/tokens', { id, password }, false)
    this.token = r.token
    return { id, token: r.token }
  }

  /** DELETE /v1/tokens/current: revokes the token. */
  async signOut(): Promise<void> {
    try {
      await this.call('DELETE', '/v1/tokens/current')
    } finally {
      this.token = undefined
    }
  }

  me(): Promise<User> {
    return this.call('GET', '/v1/me')
  }

  user(id: string): Promise<User> {
    return this.call('GET', `/v1/users/${encodeURIComponent(id)}`)
  }

  /**
   * GET /v1/messages: with after, the entries above it, oldest first; with
   * before, the page just below it; with neither, the newest page.
   */
  messages(inbox: InboxTopic, opts: { after?: number; before?: number; limit?: number } = {}): Promise<HistoryPage> {
    const q = new URLSearchParams({ inbox })
    if (opts.after !== undefined) q.set('after', String(opts.after))
    if (opts.before !== undefined) q.set('before', String(opts.before))
    if (opts.limit !== undefined) q.set('limit', String(opts.limit))
    return this.call<HistoryPage>('GET', `/v1/messages?${q}`).then((p) => ({
      inbox: p.inbox ?? inbox,
      entries: (p.entries ?? []) as Entry[],
      more: !!p.more,
    }))
  }

  // Groups (coming on the server): NotSupportedError until they land.

  createGroup(name: string, members: string[]): Promise<Group> {
    return this.call('POST', '/v1/groups', { name, members })
  }

  group(id: string): Promise<Group> {
    return this.call('GET', `/v1/groups/${encodeURIComponent(id)}`)
  }

  async myGroups(): Promise<Group[]> {
    const r = await this.call<Group[] | { groups: Group[] }>('GET', '/v1/me/groups')
    return Array.isArray(r) ? r : (r?.groups ?? [])
  }

  addMember(group: string, user: string): Promise<unknown> {
    return this.call('POST', `/v1/groups/${encodeURIComponent(group)}/members`, { user })
  }

  removeMember(group: string, user: string): Promise<unknown> {
    return this.call('DELETE', `/v1/groups/${encodeURIComponent(group)}/members/${encodeURIComponent(user)}`)
  }

  renameGroup(group: string, name: string): Promise<Group> {
    return this.call('PATCH', `/v1/groups/${encodeURIComponent(group)}`, { name })
  }

  /** GET /v1/me/conversations (coming on the server). */
  async conversations(): Promise<ConversationSummary[]> {
    const r = await this.call<any>('GET', '/v1/me/conversations')
    const list: any[] = Array.isArray(r) ? r : (r?.conversations ?? [])
    return list.map(normalizeConversation).filter((c): c is ConversationSummary => c !== undefined)
  }

  /** GET /v1/presence?users=a,b (coming on the server). */
  async presence(users: string[]): Promise<Presence[]> {
    if (users.length === 0) return []
    const r = await this.call<any>('GET', `/v1/presence?users=${users.map(encodeURIComponent).join(',')}`)
    const list: any[] = Array.isArray(r) ? r : Array.isArray(r?.presence) ? r.presence : Array.isArray(r?.users) ? r.users : []
    return list.map((p) => parsePresence(p)).filter((p): p is Presence => p !== undefined)
  }
}

/**
 * Reads one item of GET /v1/me/conversations. The issue fixes its content
 * (partner or group, last entry, unread count, read cursor), not its field
 * names, so the likely spellings are accepted.
 */
export function normalizeConversation(c: any): ConversationSummary | undefined {
  if (!c || typeof c !== 'object') return undefined
  let peer: string | undefined = c.peer ?? c.partner ?? c.user ?? c.with
  let group: string | undefined = c.group ?? c.group_id
  if (typeof group === 'object' && group) group = (group as any).id
  const inbox: string | undefined = c.inbox ?? c.topic ?? c.id
  if (!peer && !group && typeof inbox === 'string') {
    if (inbox.startsWith('u/')) peer = inbox.slice(2)
    else if (inbox.startsWith('g/')) group = inbox.slice(2)
  }
  if (c.type === 'group' && !group && typeof c.id === 'string') group = c.id
  if (!peer && !group) return undefined
  const read = c.read ?? c.read_seq ?? c.read_cursor ?? c.cursor
  return {
    key: group ? `g/${group}` : `u/${peer}`,
    peer: group ? undefined : peer,
    group,
    last: c.last ?? c.last_entry ?? c.last_message,
    unread: Number(c.unread ?? c.unread_count ?? 0) || 0,
    read: typeof read === 'number' ? read : undefined,
  }
}

/** Reads a presence payload: {"user","status","ts"|"last_seen"}; status online, away, offline or hidden. */
export function parsePresence(p: any, topicUser?: string): Presence | undefined {
  if (!p || typeof p !== 'object') return undefined
  const user = typeof p.user === 'string' ? p.user : topicUser
  if (!user || !['online', 'away', 'offline', 'hidden'].includes(p.status)) return undefined
  const since = p.status === 'offline' ? (p.last_seen ?? p.ts ?? p.since) : (p.ts ?? p.since)
  return { user, status: p.status, since: typeof since === 'number' ? since : undefined }
}
