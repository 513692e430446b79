import type {
  ConversationSummary,
  Group,
  GroupAdds,
  GroupHistory,
  HistoryPage,
  InboxTopic,
  PeerEntry,
  Presence,
  PresencePrivacy,
  PushDevice,
  PushPlatform,
  PushSettings,
  Session,
  User,
} from './types.js'
import {
  decodeConsent,
  decodeConversations,
  decodeDevice,
  decodeDevices,
  decodeGroup,
  decodeGroups,
  decodeHistoryPage,
  decodePeers,
  decodePresenceList,
  decodePrivacy,
  decodePushSettings,
  decodeSessions,
  decodeUser,
} from './wire.js'

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
 * The server does not serve this route: it answered 404 "no such endpoint"
 * or 405 (the push routes, when the server has push notifications off).
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
    const f = fetchImpl ?? (globalThis as { fetch?: Fetch }).fetch
    if (!f) throw new Error('parley: no fetch: pass one to ParleyApi')
    this.fetch = (input, init) => f(input, init)
  }

  private async call(method: string, path: string, body?: unknown, auth = true): Promise<unknown> {
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
    let data: unknown = undefined
    if (text) {
      try {
        data = JSON.parse(text)
      } catch {
        data = undefined
      }
    }
    if (!res.ok) {
      const err = (data as { error?: unknown } | undefined)?.error
      const msg = typeof err === 'string' ? err : `HTTP ${res.status}`
      if (res.status === 405 || (res.status === 404 && msg === 'no such endpoint')) {
        throw new NotSupportedError(`${method} ${path.split('?')[0]}`)
      }
      throw new ApiError(res.status, msg)
    }
    return data
  }

  /** call, and the answer decoded: an ApiError when it is not of the shape the route answers. */
  private async get<T>(method: string, path: string, decode: (v: unknown) => T | undefined, body?: unknown, auth = true): Promise<T> {
    const v = decode(await this.call(method, path, body, auth))
    if (v === undefined) throw new ApiError(0, `unexpected answer to ${method} ${path.split('?')[0]}`)
    return v
  }

  /** POST /v1/users: creates an account and returns its first token. */
  async signUp(id: string, password: string, name: string): Promise<SignedIn> {
    const r = await this.get('POST', '/v1/users', decodeSignedIn, { id, password, name }, false)
    this.token = r.token
    return r
  }

  /** POST /v1/tokens: signs in. */
  async signIn(id: string, password: string): Promise<SignedIn> {
    const r = await this.get('POST', '/v1/tokens', decodeSignedIn, { id, password }, false)
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
    return this.get('GET', '/v1/me', decodeUser)
  }

  user(id: string): Promise<User> {
    return this.get('GET', `/v1/users/${encodeURIComponent(id)}`, decodeUser)
  }

  /**
   * GET /v1/messages: with after, the entries above it, oldest first; with
   * before, the page just below it; with neither, the newest page.
   */
  messages(inbox: InboxTopic, opts: { after?: number; before?: number; limit?: number } = {}): Promise<HistoryPage> {
    return this.get('GET', `/v1/messages?${query({ inbox, after: opts.after, before: opts.before, limit: opts.limit })}`, decodeHistoryPage)
  }

  // Groups.

  createGroup(name: string, members: string[], history?: GroupHistory): Promise<Group> {
    return this.get('POST', '/v1/groups', decodeGroup, history ? { name, members, history } : { name, members })
  }

  group(id: string): Promise<Group> {
    return this.get('GET', `/v1/groups/${encodeURIComponent(id)}`, decodeGroup)
  }

  /** GET /v1/me/groups: each with the caller's read_seq. */
  myGroups(): Promise<Group[]> {
    return this.get('GET', '/v1/me/groups', decodeGroups)
  }

  addMember(group: string, user: string): Promise<Group> {
    return this.get('POST', `/v1/groups/${encodeURIComponent(group)}/members`, decodeGroup, { user })
  }

  async removeMember(group: string, user: string): Promise<void> {
    await this.call('DELETE', `/v1/groups/${encodeURIComponent(group)}/members/${encodeURIComponent(user)}`)
  }

  renameGroup(group: string, name: string): Promise<Group> {
    return this.get('PATCH', `/v1/groups/${encodeURIComponent(group)}`, decodeGroup, { name })
  }

  /** Sets what members added later read (the owner and admins). */
  setGroupHistory(group: string, history: GroupHistory): Promise<Group> {
    return this.get('PATCH', `/v1/groups/${encodeURIComponent(group)}`, decodeGroup, { history })
  }

  /** GET /v1/me/conversations: the chat list, newest first. */
  conversations(): Promise<ConversationSummary[]> {
    return this.get('GET', '/v1/me/conversations', decodeConversations)
  }

  // Presence.

  /** GET /v1/presence?users=a,b: in the order asked; users the caller may not see are hidden. */
  async presence(users: string[]): Promise<Presence[]> {
    if (users.length === 0) return []
    return this.get('GET', `/v1/presence?users=${users.map(encodeURIComponent).join(',')}`, decodePresenceList)
  }

  /** GET /v1/me/presence: who may see the user's presence. */
  async presencePrivacy(): Promise<PresencePrivacy> {
    return (await this.get('GET', '/v1/me/presence', decodePrivacy)).privacy
  }

  async setPresencePrivacy(privacy: PresencePrivacy): Promise<void> {
    await this.call('PUT', '/v1/me/presence', { privacy })
  }

  // Blocking, contacts and consent.

  blocks(): Promise<PeerEntry[]> {
    return this.get('GET', '/v1/me/blocks', (v) => decodePeers(v, 'blocks'))
  }

  async block(user: string): Promise<void> {
    await this.call('PUT', `/v1/me/blocks/${encodeURIComponent(user)}`)
  }

  async unblock(user: string): Promise<void> {
    await this.call('DELETE', `/v1/me/blocks/${encodeURIComponent(user)}`)
  }

  contacts(): Promise<PeerEntry[]> {
    return this.get('GET', '/v1/me/contacts', (v) => decodePeers(v, 'contacts'))
  }

  async addContact(user: string): Promise<void> {
    await this.call('PUT', `/v1/me/contacts/${encodeURIComponent(user)}`)
  }

  async removeContact(user: string): Promise<void> {
    await this.call('DELETE', `/v1/me/contacts/${encodeURIComponent(user)}`)
  }

  /** GET /v1/me/consent: who may add the user to groups. */
  async groupAdds(): Promise<GroupAdds> {
    return (await this.get('GET', '/v1/me/consent', decodeConsent)).group_adds
  }

  async setGroupAdds(groupAdds: GroupAdds): Promise<void> {
    await this.call('PUT', '/v1/me/consent', { group_adds: groupAdds })
  }

  // Sessions and the account.

  /** GET /v1/me/sessions: most recently used first; `current` is this client's. */
  sessions(): Promise<Session[]> {
    return this.get('GET', '/v1/me/sessions', decodeSessions)
  }

  /** Ends one session: its token is revoked and its connections end. */
  async endSession(id: string): Promise<void> {
    await this.call('DELETE', `/v1/me/sessions/${encodeURIComponent(id)}`)
  }

  /** Ends every session but this one; returns how many. */
  async endOtherSessions(): Promise<number> {
    return (await this.get('DELETE', '/v1/me/sessions', decodeRevoked)).revoked
  }

  /** Changes the password: every other session ends (how many is returned). */
  async changePassword(oldPassword: string, newPassword: string): Promise<number> {
    return (await this.get('PUT', '/v1/me/password', decodeRevoked, { old_password: oldPassword, new_password: newPassword })).revoked
  }

  // Push notifications (404 when the server has push off).

  /** POST /v1/devices: registers (or refreshes) this device's push token; call it after every launch. */
  registerPushToken(d: { platform: PushPlatform; token: string; device?: string; environment?: 'production' | 'sandbox' }): Promise<PushDevice> {
    return this.get('POST', '/v1/devices', decodeDevice, d)
  }

  pushTokens(): Promise<PushDevice[]> {
    return this.get('GET', '/v1/devices', decodeDevices)
  }

  async unregisterPushToken(token: string): Promise<void> {
    await this.call('DELETE', `/v1/devices/${encodeURIComponent(token)}`)
  }

  pushSettings(): Promise<PushSettings> {
    return this.get('GET', '/v1/me/push', decodePushSettings)
  }

  /** Previews off: notifications carry no message text. */
  async setPushPreview(preview: boolean): Promise<void> {
    await this.call('PUT', '/v1/me/push', { preview })
  }

  /** Mutes `u/{peer}` or `g/{group}`, for ever or until a time. */
  async mute(conversation: InboxTopic, until?: Date): Promise<void> {
    await this.call('PUT', `/v1/me/mutes/${conversation}`, until ? { until: until.toISOString() } : undefined)
  }

  async unmute(conversation: InboxTopic): Promise<void> {
    await this.call('DELETE', `/v1/me/mutes/${conversation}`)
  }
}

function decodeSignedIn(v: unknown): SignedIn | undefined {
  const o = v as { id?: unknown; name?: unknown; token?: unknown } | undefined
  if (!o || typeof o.token !== 'string') return undefined
  return {
    id: typeof o.id === 'string' ? o.id : '',
    ...(typeof o.name === 'string' ? { name: o.name } : {}),
    token: o.token,
  }
}

function decodeRevoked(v: unknown): { revoked: number } | undefined {
  const n = (v as { revoked?: unknown } | undefined)?.revoked
  return typeof n === 'number' ? { revoked: n } : undefined
}

/**
 * A query string, built by hand (URLSearchParams is incomplete on older
 * React Native): the defined values, percent-encoded.
 */
export function query(params: Record<string, string | number | undefined>): string {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&')
}
