// The wire contract of docs/protocol.md, as TypeScript types.

/** An inbox topic: `u/{user}` (a user's inbox) or `g/{group}` (a group's). */
export type InboxTopic = string

/** The body of a chat message: any JSON object; Parley's apps use `text`. */
export interface MessageBody {
  text?: string
  [key: string]: unknown
}

/** Entry types the server delivers. Group membership types come with groups. */
export type EntryType =
  | 'msg'
  | 'receipt'
  | 'error'
  | 'typing'
  | 'read'
  | 'group_created'
  | 'member_added'
  | 'member_removed'
  | 'renamed'

/**
 * An entry: everything delivered on an inbox topic, stamped by the server.
 * Types other than `msg` carry their own fields at the top level.
 */
export interface Entry {
  id: string
  inbox: InboxTopic
  /** Position in `inbox`, gapless from 1; 0 for live-only entries (typing). */
  seq: number
  from: string
  to: string
  /** Server time, Unix milliseconds. */
  ts: number
  type: EntryType | (string & {})
  cid?: string
  body?: MessageBody
  // receipt
  status?: 'delivered' | 'read' | (string & {})
  by?: string
  for?: string
  ids?: string[]
  // error
  code?: number
  reason?: string
  topic?: string
  // group membership and renames
  user?: string
  name?: string
  [key: string]: unknown
}

/** A page of GET /v1/messages. */
export interface HistoryPage {
  inbox: InboxTopic
  entries: Entry[]
  /** Whether entries exist beyond the page in the paging direction. */
  more: boolean
}

export interface User {
  id: string
  name: string
  created_at?: string
}

export interface Group {
  id: string
  name: string
  owner: string
  members: string[]
}

/** A user's presence, as published (retained) on `p/{user}`. */
export interface Presence {
  user: string
  /** hidden: the user does not share presence with you. */
  status: 'online' | 'away' | 'offline' | 'hidden'
  /** When the status began (online, away) or when the user was last seen (offline), Unix ms. */
  since?: number
}

/** One conversation of GET /v1/me/conversations. */
export interface ConversationSummary {
  /** `u/{peer}` for a direct chat, `g/{group}` for a group. */
  key: string
  peer?: string
  group?: string
  last?: Entry
  unread: number
  /** The highest seq the user has read in the conversation's inbox. */
  read?: number
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
