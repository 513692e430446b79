// Decoders of what the server sends (entries, presence payloads, the HTTP
// API's answers) and encoders of what clients publish: docs/protocol.md,
// checked against the golden fixtures the Go tests write
// (protocol/testdata/golden). Decoders take parsed JSON (`unknown`) and
// return the typed value, or undefined when the input is not of the shape.
import {
  type ConversationSummary,
  type Entry,
  type EntryHeader,
  type Group,
  type GroupAdds,
  type HistoryPage,
  type InboxTopic,
  type KnownEntry,
  type MessageBody,
  type PeerEntry,
  type Presence,
  type PresencePrivacy,
  type PushDevice,
  type PushSettings,
  type Session,
  type SessionConnection,
  type UnknownEntry,
  type User,
} from './types.js'

type Obj = Record<string, unknown>

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined)
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])

/** Drops the keys whose value is undefined, so that decoded values hold only what came. */
function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k]
  return o
}

/** Parses a JSON text, or undefined when it is not JSON. */
export function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * Decodes an entry: the header must be there (it orders the inbox); the
 * fields of the known types are read by type, and wrong or missing ones
 * take their empty value (an entry is never dropped for them, so that an
 * inbox's seq stays gapless). An entry of a type this SDK does not know
 * becomes an UnknownEntry: type "unknown", the type sent in `wireType`, its
 * fields as they came.
 */
export function decodeEntry(v: unknown): Entry | undefined {
  if (!isObj(v)) return undefined
  const id = str(v.id)
  const inbox = str(v.inbox)
  const seq = num(v.seq)
  const from = str(v.from)
  const to = str(v.to)
  const ts = num(v.ts)
  const type = str(v.type)
  if (id === undefined || inbox === undefined || seq === undefined || from === undefined || to === undefined || ts === undefined || !type) {
    return undefined
  }
  const h: EntryHeader = { id, inbox, seq, from, to, ts }
  const known = decodeKnown(h, type, v)
  if (known) return known
  return { ...v, ...h, type: 'unknown', wireType: type } as UnknownEntry
}

function decodeKnown(h: EntryHeader, type: string, v: Obj): KnownEntry | undefined {
  switch (type) {
    case 'msg':
      return compact({ ...h, type, cid: str(v.cid), body: (isObj(v.body) ? v.body : {}) as MessageBody })
    case 'receipt':
      return compact({ ...h, type, status: str(v.status) ?? '', by: str(v.by), for: str(v.for), ids: strs(v.ids), count: num(v.count), of: num(v.of) })
    case 'error':
      return compact({
        ...h,
        type,
        cid: str(v.cid),
        code: num(v.code) ?? 0,
        reason: str(v.reason) ?? '',
        topic: str(v.topic),
        suppressed: num(v.suppressed),
      })
    case 'typing':
      return { ...h, type }
    case 'read':
      return compact({ ...h, type, for: str(v.for) ?? '', with: str(v.with), read_seq: num(v.read_seq) ?? 0 })
    case 'group_created':
    case 'renamed':
      return { ...h, type, by: str(v.by) ?? '', name: str(v.name) ?? '' }
    case 'member_added':
    case 'member_removed':
      return compact({ ...h, type, by: str(v.by) ?? '', user: str(v.user) ?? '', for: str(v.for), name: str(v.name) })
    case 'history_changed':
      return { ...h, type, by: str(v.by) ?? '', history: str(v.history) ?? '' }
  }
  return undefined
}

const presenceStatuses = new Set(['online', 'away', 'offline', 'hidden'])

/**
 * Decodes a presence: the retained payload of `p/{user}` or an item of GET
 * /v1/presence: `{"user","status","ts"}`, or `"last_seen"` when offline.
 */
export function decodePresence(v: unknown): Presence | undefined {
  if (!isObj(v)) return undefined
  const user = str(v.user)
  const status = str(v.status)
  if (!user || !status || !presenceStatuses.has(status)) return undefined
  return compact({ user, status: status as Presence['status'], ts: num(v.ts), last_seen: num(v.last_seen) })
}

/** GET /v1/presence: `{"users":[…]}`. */
export function decodePresenceList(v: unknown): Presence[] | undefined {
  if (!isObj(v) || !Array.isArray(v.users)) return undefined
  return v.users.map(decodePresence).filter((p): p is Presence => p !== undefined)
}

/** GET /v1/messages: `{"inbox","entries":[…],"more"}`. Entries without a header are left out. */
export function decodeHistoryPage(v: unknown): HistoryPage | undefined {
  if (!isObj(v) || typeof v.inbox !== 'string' || !Array.isArray(v.entries) || typeof v.more !== 'boolean') return undefined
  return { inbox: v.inbox, entries: v.entries.map(decodeEntry).filter((e): e is Entry => e !== undefined), more: v.more }
}

/** GET /v1/me, GET /v1/users/{id}. */
export function decodeUser(v: unknown): User | undefined {
  if (!isObj(v) || typeof v.id !== 'string' || typeof v.name !== 'string') return undefined
  return compact({ id: v.id, name: v.name, created_at: str(v.created_at) ?? '', deleted: v.deleted === true ? true : undefined })
}

/** A group: POST /v1/groups, GET /v1/groups/{id}, PATCH, POST …/members. */
export function decodeGroup(v: unknown): Group | undefined {
  if (!isObj(v) || typeof v.id !== 'string' || typeof v.name !== 'string') return undefined
  const roles: Record<string, string> = {}
  if (isObj(v.roles)) for (const [u, r] of Object.entries(v.roles)) if (typeof r === 'string') roles[u] = r
  return {
    id: v.id,
    name: v.name,
    owner: str(v.owner) ?? '',
    history: str(v.history) ?? '',
    members: strs(v.members),
    roles,
    last_seq: num(v.last_seq) ?? 0,
    read_seq: num(v.read_seq) ?? 0,
    created_at: str(v.created_at) ?? '',
  }
}

/** GET /v1/me/groups: `{"groups":[…]}`. */
export function decodeGroups(v: unknown): Group[] | undefined {
  if (!isObj(v) || !Array.isArray(v.groups)) return undefined
  return v.groups.map(decodeGroup).filter((g): g is Group => g !== undefined)
}

/** One conversation of GET /v1/me/conversations. */
export function decodeConversation(v: unknown): ConversationSummary | undefined {
  if (!isObj(v) || (v.type !== 'direct' && v.type !== 'group') || typeof v.inbox !== 'string') return undefined
  const type = v.type === 'group' ? 'group' : 'direct'
  const peer = str(v.peer)
  const group = str(v.group)
  if (type === 'direct' ? !peer : !group) return undefined
  return compact<ConversationSummary>({
    type,
    key: type === 'group' ? `g/${group}` : `u/${peer}`,
    peer,
    group,
    name: str(v.name),
    inbox: v.inbox,
    last: v.last === undefined ? undefined : decodeEntry(v.last),
    unread: num(v.unread) ?? 0,
    read_seq: num(v.read_seq) ?? 0,
  })
}

/** GET /v1/me/conversations: `{"conversations":[…]}`, newest first. */
export function decodeConversations(v: unknown): ConversationSummary[] | undefined {
  if (!isObj(v) || !Array.isArray(v.conversations)) return undefined
  return v.conversations.map(decodeConversation).filter((c): c is ConversationSummary => c !== undefined)
}

/** GET /v1/me/blocks (key "blocks") or /v1/me/contacts (key "contacts"). */
export function decodePeers(v: unknown, key: 'blocks' | 'contacts'): PeerEntry[] | undefined {
  if (!isObj(v) || !Array.isArray(v[key])) return undefined
  return (v[key] as unknown[]).filter(isObj).flatMap((p) => (typeof p.user === 'string' ? [{ user: p.user, at: str(p.at) ?? '' }] : []))
}

/** GET/PUT /v1/me/consent: who may add the user to groups. */
export function decodeConsent(v: unknown): { group_adds: GroupAdds } | undefined {
  if (!isObj(v) || (v.group_adds !== 'everyone' && v.group_adds !== 'contacts' && v.group_adds !== 'nobody')) return undefined
  return { group_adds: v.group_adds }
}

/** GET/PUT /v1/me/presence: who may see the user's presence. */
export function decodePrivacy(v: unknown): { privacy: PresencePrivacy } | undefined {
  if (!isObj(v) || (v.privacy !== 'everyone' && v.privacy !== 'contacts' && v.privacy !== 'nobody')) return undefined
  return { privacy: v.privacy }
}

function decodeConnection(v: unknown): SessionConnection | undefined {
  if (!isObj(v) || typeof v.client_id !== 'string') return undefined
  return compact({ client_id: v.client_id, node: str(v.node), addr: str(v.addr) ?? '', since: str(v.since) ?? '' })
}

/** One of GET /v1/me/sessions. */
export function decodeSession(v: unknown): Session | undefined {
  if (!isObj(v) || typeof v.id !== 'string') return undefined
  return compact({
    id: v.id,
    current: v.current === true,
    created_at: str(v.created_at) ?? '',
    last_used_at: str(v.last_used_at) ?? '',
    expires_at: str(v.expires_at) ?? '',
    last_addr: str(v.last_addr),
    last_user_agent: str(v.last_user_agent),
    last_client_id: str(v.last_client_id),
    connections: Array.isArray(v.connections)
      ? v.connections.map(decodeConnection).filter((c): c is SessionConnection => c !== undefined)
      : [],
  })
}

/** GET /v1/me/sessions: `{"sessions":[…]}`, most recently used first. */
export function decodeSessions(v: unknown): Session[] | undefined {
  if (!isObj(v) || !Array.isArray(v.sessions)) return undefined
  return v.sessions.map(decodeSession).filter((s): s is Session => s !== undefined)
}

/** A push token: POST /v1/devices, an item of GET /v1/devices. */
export function decodeDevice(v: unknown): PushDevice | undefined {
  if (!isObj(v) || typeof v.platform !== 'string' || typeof v.token !== 'string') return undefined
  return compact({
    platform: v.platform,
    token: v.token,
    device: str(v.device),
    environment: str(v.environment),
    session: str(v.session),
    updated_at: str(v.updated_at),
  })
}

/** GET /v1/devices: `{"devices":[…]}`. */
export function decodeDevices(v: unknown): PushDevice[] | undefined {
  if (!isObj(v) || !Array.isArray(v.devices)) return undefined
  return v.devices.map(decodeDevice).filter((d): d is PushDevice => d !== undefined)
}

/** GET /v1/me/push. */
export function decodePushSettings(v: unknown): PushSettings | undefined {
  if (!isObj(v) || typeof v.preview !== 'boolean') return undefined
  const mutes = Array.isArray(v.mutes) ? v.mutes.filter(isObj) : []
  return {
    preview: v.preview,
    mutes: mutes.flatMap((m) => (typeof m.inbox === 'string' ? [compact({ inbox: m.inbox, until: str(m.until) })] : [])),
  }
}

// --- What clients publish (docs/protocol.md; protocol.ParseSubmission) ---

/** A message to `u/{peer}` or `g/{group}`, QoS 1. */
export function encodeMessage(cid: string, body: MessageBody): string {
  return JSON.stringify({ cid, body })
}

/** A typing notice to `u/{peer}` or `g/{group}`, QoS 0. */
export function encodeTyping(): string {
  return '{"type":"typing"}'
}

/**
 * A read marker: published to the user's own inbox with the inbox read and,
 * for one direct conversation, `with`; to a group's inbox with the seq only.
 */
export function encodeRead(inbox: InboxTopic, seq: number, withPeer?: string): string {
  if (inbox.startsWith('g/')) return JSON.stringify({ type: 'read', seq })
  return JSON.stringify(withPeer ? { type: 'read', inbox, seq, with: withPeer } : { type: 'read', inbox, seq })
}

/** A device's own status, published to its `p/{user}`, QoS 1. */
export function encodePresenceStatus(status: 'online' | 'away'): string {
  return JSON.stringify({ status })
}
