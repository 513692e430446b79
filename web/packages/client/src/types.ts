// The wire contract of docs/protocol.md, as TypeScript types.

/** An inbox topic: `u/{user}` (a user's inbox) or `g/{group}` (a group's). */
export type InboxTopic = string

/** The body of a chat message: any JSON object; Parley's apps use `text`. */
export interface MessageBody {
  text?: string
  [key: string]: unknown
}

/**
 * The entry types of docs/protocol.md (protocol/envelope.go), in the order
 * of the Go constants. The SDK's tests check this list against the golden
 * fixtures the Go tests write (protocol/testdata/golden/entries).
 */
export const entryTypes = [
  'msg',
  'receipt',
  'error',
  'typing',
  'read',
  'group_created',
  'member_added',
  'member_removed',
  'renamed',
  'history_changed',
] as const

export type EntryType = (typeof entryTypes)[number]

/** The header every entry starts with, in this order on the wire. */
export interface EntryHeader {
  /** Message id (UUIDv7), shared by the copies of one message; "" for typing notices. */
  id: string
  /** The inbox this copy is stored in: `u/{user}` or `g/{group}`. */
  inbox: InboxTopic
  /** Position in `inbox`, gapless from 1; 0 for live-only entries (typing). */
  seq: number
  /** Sender, set by the server; "" for a group's aggregated receipts. */
  from: string
  /** A user id in `u/` inboxes, the group id in `g/` ones. */
  to: string
  /** Server time, Unix milliseconds. */
  ts: number
}

/** A chat message. */
export interface MsgEntry extends EntryHeader {
  type: 'msg'
  /** The sender's own id of the message, when it gave one. */
  cid?: string
  body: MessageBody
}

export type ReceiptStatus = 'delivered' | 'read'

/**
 * A delivered or read receipt in the sender's inbox. Direct messages: `by`
 * received (or read) `ids` in inbox `for`. Group messages: `count` of the
 * group's `of` other members have all of `ids` (no `by`, `from` is "").
 */
export interface ReceiptEntry extends EntryHeader {
  type: 'receipt'
  status: ReceiptStatus | (string & {})
  by?: string
  for?: InboxTopic
  ids: string[]
  count?: number
  of?: number
}

/** A refused publish, reported in the publisher's own inbox (MQTT 3.1.1 and QoS 0). */
export interface ErrorEntry extends EntryHeader {
  type: 'error'
  cid?: string
  /** The MQTT 5 reason code (see Reason). */
  code: number
  reason: string
  /** The topic published to, cut to 128 bytes. */
  topic?: string
  /** How many refusals before this one got no entry of their own. */
  suppressed?: number
}

/** Someone is typing: live only, `seq` 0, never stored. */
export interface TypingEntry extends EntryHeader {
  type: 'typing'
}

/**
 * A read marker of the user's, echoed to its other devices in its own
 * inbox: `for` is read up to `read_seq` (with `with`: only the direct
 * conversation with that user).
 */
export interface ReadEntry extends EntryHeader {
  type: 'read'
  for: InboxTopic
  with?: string
  read_seq: number
}

/** A group was created (in the group's inbox): `by` its owner, `name` its name. */
export interface GroupCreatedEntry extends EntryHeader {
  type: 'group_created'
  by: string
  name: string
}

/**
 * `by` added `user`. In the group's inbox; or, as a notice in the added
 * user's own inbox, with the group's inbox in `for` and its `name`.
 */
export interface MemberAddedEntry extends EntryHeader {
  type: 'member_added'
  by: string
  user: string
  for?: InboxTopic
  name?: string
}

/** `by` removed `user` (`by` = `user`: left). As member_added, also a notice with `for` and `name`. */
export interface MemberRemovedEntry extends EntryHeader {
  type: 'member_removed'
  by: string
  user: string
  for?: InboxTopic
  name?: string
}

/** `by` renamed the group to `name`. */
export interface RenamedEntry extends EntryHeader {
  type: 'renamed'
  by: string
  name: string
}

export type GroupHistory = 'join' | 'full'

/** `by` set what members added later read: from their join, or the full history. */
export interface HistoryChangedEntry extends EntryHeader {
  type: 'history_changed'
  by: string
  history: GroupHistory | (string & {})
}

/**
 * An entry of a type this SDK does not know (a newer server's): decodeEntry
 * gives it type "unknown", its type as sent in `wireType`, and its own
 * fields as they came. It still holds its place in the inbox's seq.
 */
export interface UnknownEntry extends EntryHeader {
  type: 'unknown'
  wireType: string
  [field: string]: unknown
}

/** An entry of a type this SDK knows. */
export type KnownEntry =
  | MsgEntry
  | ReceiptEntry
  | ErrorEntry
  | TypingEntry
  | ReadEntry
  | GroupCreatedEntry
  | MemberAddedEntry
  | MemberRemovedEntry
  | RenamedEntry
  | HistoryChangedEntry

/**
 * An entry: everything delivered on an inbox topic, stamped by the server,
 * discriminated by `type` (switch on it, and each case has its type's own
 * fields; `unknown` for types this SDK does not know). Made by decodeEntry.
 */
export type Entry = KnownEntry | UnknownEntry

/** The group events, shown in a group's conversation. */
export type GroupEventEntry = GroupCreatedEntry | MemberAddedEntry | MemberRemovedEntry | RenamedEntry | HistoryChangedEntry

/** A page of GET /v1/messages. */
export interface HistoryPage {
  inbox: InboxTopic
  /** Oldest first. */
  entries: Entry[]
  /** Whether entries exist beyond the page in the paging direction. */
  more: boolean
}

/** GET /v1/me, GET /v1/users/{id}. */
export interface User {
  id: string
  name: string
  /** RFC 3339. */
  created_at: string
  /** A deleted account (its name is "Deleted user"). */
  deleted?: boolean
}

export type GroupRole = 'owner' | 'admin' | 'member'

/** A group, as POST /v1/groups, GET /v1/groups/{id} and GET /v1/me/groups answer it. */
export interface Group {
  id: string
  name: string
  owner: string
  history: GroupHistory | (string & {})
  /** Sorted user ids. */
  members: string[]
  roles: Record<string, GroupRole | (string & {})>
  last_seq: number
  /** The caller's read cursor (GET /v1/me/groups; 0 elsewhere). */
  read_seq: number
  created_at: string
}

export type PresenceStatus = 'online' | 'away' | 'offline' | 'hidden'

/**
 * A user's presence, as published (retained) on `p/{user}` and answered
 * by GET /v1/presence.
 */
export interface Presence {
  user: string
  /** hidden: the user does not share presence with you (or does not exist). */
  status: PresenceStatus
  /** online, away: since when, Unix ms. */
  ts?: number
  /** offline: when the user was last connected, Unix ms (absent if never). */
  last_seen?: number
}

/** When a presence status began (online, away) or when the user was last seen (offline), Unix ms. */
export function presenceSince(p: Presence): number | undefined {
  return p.status === 'offline' ? p.last_seen : p.status === 'hidden' ? undefined : p.ts
}

/** One conversation of GET /v1/me/conversations. */
export interface ConversationSummary {
  type: 'direct' | 'group'
  /** The conversation (not on the wire): `u/{peer}` for a direct chat, `g/{group}` for a group. */
  key: InboxTopic
  peer?: string
  group?: string
  /** A group's name. */
  name?: string
  /** The inbox its entries are stored in: the caller's `u/{me}` for direct chats. */
  inbox: InboxTopic
  /** The newest entry of the conversation. */
  last?: Entry
  /** Messages from others after the read cursor. */
  unread: number
  /** The highest seq the user has read in `inbox`. */
  read_seq: number
}

export type PresencePrivacy = 'everyone' | 'contacts' | 'nobody'
export type GroupAdds = 'everyone' | 'contacts' | 'nobody'

/** A user in GET /v1/me/blocks or /v1/me/contacts, and since when (RFC 3339). */
export interface PeerEntry {
  user: string
  at: string
}

/** A live MQTT connection of a session. */
export interface SessionConnection {
  client_id: string
  /** The node, in a cluster. */
  node?: string
  addr: string
  since: string
}

/** One of GET /v1/me/sessions: an access token, named by an id that is not the token. */
export interface Session {
  id: string
  /** The session of the request's token. */
  current: boolean
  created_at: string
  last_used_at: string
  expires_at: string
  last_addr?: string
  last_user_agent?: string
  last_client_id?: string
  connections: SessionConnection[]
}

export type PushPlatform = 'apns' | 'fcm'

/** A push token, as POST /v1/devices and GET /v1/devices answer it. */
export interface PushDevice {
  platform: PushPlatform | (string & {})
  token: string
  device?: string
  environment?: 'production' | 'sandbox' | (string & {})
  /** The id of the session that registered it (see Session). */
  session?: string
  /** RFC 3339 (GET /v1/devices). */
  updated_at?: string
}

export interface PushMute {
  /** `u/{peer}` or `g/{group}`. */
  inbox: InboxTopic
  /** RFC 3339; absent: muted for ever. */
  until?: string
}

/** GET /v1/me/push. */
export interface PushSettings {
  preview: boolean
  mutes: PushMute[]
}

/** MQTT 5 reason codes Parley answers a publish with (protocol.md, Errors). */
export const Reason = {
  Success: 0x00,
  Unavailable: 0x80,
  NotAuthorized: 0x87,
  NoInbox: 0x90,
  TooLarge: 0x95,
  RateLimited: 0x97,
  BadPayload: 0x99,
} as const

/** The short text for a reason code, as people should read it. */
export function reasonText(code: number): string {
  switch (code) {
    case Reason.Success:
      return 'sent'
    case Reason.Unavailable:
      return 'the server cannot store messages right now'
    case Reason.NotAuthorized:
      return 'not allowed'
    case Reason.NoInbox:
      return 'no such user or group'
    case Reason.TooLarge:
      return 'message too large'
    case Reason.RateLimited:
      return 'sending too fast'
    case Reason.BadPayload:
      return 'the server refused the message format'
  }
  return `refused (reason 0x${code.toString(16).padStart(2, '0')})`
}

/** Whether a publish refused with code should be retried with the same cid. */
export function isRetryable(code: number): boolean {
  return code === Reason.Unavailable || code === Reason.RateLimited
}

export function userInbox(user: string): InboxTopic {
  return `u/${user}`
}

export function groupInbox(group: string): InboxTopic {
  return `g/${group}`
}

export function presenceTopic(user: string): string {
  return `p/${user}`
}

const idPattern = /^[a-z0-9][a-z0-9_.-]{0,63}$/

/** Whether s is a valid user or group id. */
export function validId(s: string): boolean {
  return idPattern.test(s)
}
