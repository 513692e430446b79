import { ApiError } from './api.js'
import type { ConnectionState, OutgoingMessage, ParleyClient } from './client.js'
import type { Source } from './sequencer.js'
import { readJSON, writeJSON, type KeyValueStorage } from './storage.js'
import {
  type ConversationSummary,
  type Entry,
  type GroupEventEntry,
  type Group,
  type InboxTopic,
  type MessageBody,
  type MsgEntry,
  type Presence,
  userInbox,
} from './types.js'

export type MessageStatus = 'queued' | 'sending' | 'sent' | 'delivered' | 'read' | 'failed'

/** A message as an app shows it: stored (with seq) or still in the outbox. */
export interface ChatMessage {
  /** Stable key: the cid for the user's own messages (the same before and after the server stores them), else the id. */
  key: string
  id?: string
  cid?: string
  /** Position in `inbox`, once stored. */
  seq?: number
  inbox?: InboxTopic
  /** `u/{peer}` or `g/{group}`. */
  conversation: InboxTopic
  from: string
  /** Server time once stored, the local time it was written before. */
  ts: number
  /** `system` for group membership changes and renames. */
  kind: 'msg' | 'system'
  text: string
  body?: MessageBody
  mine: boolean
  /** For the user's own messages. */
  status?: MessageStatus
  /** Why it failed. */
  reason?: string
}

export interface Conversation {
  /** `u/{peer}` or `g/{group}`: also the topic messages are published to. */
  key: InboxTopic
  kind: 'direct' | 'group'
  peer?: string
  group?: string
  title: string
  /**
   * A group the user is no longer a member of: removed by someone, or left.
   * Its history up to then stays readable; nothing can be sent to it.
   */
  former?: 'removed' | 'left'
  last?: ChatMessage
  unread: number
  /** For sorting: the last message's time, or when the conversation was opened. */
  updatedAt: number
}

export interface ChatState {
  user?: string
  connection: ConnectionState
  /** Set while offline: why, for people. */
  connectionDetail?: string
  /** Whether the newest page of the user's inbox and the chat list (unread counts) were read. */
  ready: boolean
  /** Newest first. */
  conversations: Conversation[]
  /** By conversation, oldest first; pending messages last. */
  messages: Record<string, ChatMessage[]>
  /** By conversation: whether older history may exist, and whether it is loading. */
  history: Record<string, { more: boolean; loading: boolean }>
  /** Display names by user id. */
  names: Record<string, string>
  presence: Record<string, Presence>
  /** By conversation: who is typing. */
  typing: Record<string, string[]>
  /** The groups the user is a member of, by id. */
  groups: Record<string, Group>
}

const statusRank: Record<MessageStatus, number> = { failed: 0, queued: 1, sending: 2, sent: 3, delivered: 4, read: 5 }

/** The server's chat list entry of a conversation, when it was read. */
interface Summary {
  unread: number
  readSeq: number
  /** The seq of the conversation's newest entry then. */
  top: number
}

/** A group the user was removed from (or left), from the notice in its inbox. */
interface FormerGroup {
  group: string
  how: 'removed' | 'left'
  name?: string
  /** The notice's seq in the user's inbox. */
  seq: number
}

const formerKey = (user: string) => `parley.former-groups.${user}`

/** The conversation an entry belongs to, for a user: `u/{peer}` or `g/{group}`. */
export function conversationOf(e: Entry, me: string): InboxTopic {
  if (e.inbox.startsWith('g/')) return e.inbox
  if (e.type === 'error' && e.topic) return e.topic
  return userInbox(e.from === me ? e.to : e.from)
}

/** The inbox a conversation's entries are stored in: the user's own for direct chats. */
export function inboxOf(conversation: InboxTopic, me: string): InboxTopic {
  return conversation.startsWith('g/') ? conversation : userInbox(me)
}

function textOf(body: MessageBody | undefined): string {
  if (!body) return ''
  if (typeof body.text === 'string') return body.text
  return '[unsupported message]'
}

/**
 * The state of a messenger over a ParleyClient, for any UI: conversations
 * with their last message and unread count, messages with their ticks,
 * history paging, typing, presence, groups. `subscribe` and `getState` fit
 * React's useSyncExternalStore; every change makes a new state object.
 *
 * It may be created before or after the client signs in: created after,
 * it reads what the client already has (the newest page of each inbox, the
 * chat list, groups, presence, the outbox) on its own. Read positions and
 * unread counts are the server's (GET /v1/me/conversations, read markers),
 * not kept on the device. Groups the user was removed from (or left) stay
 * listed, read-only, with their history up to then.
 */
export class ChatStore {
  private state: ChatState
  private readonly listeners = new Set<() => void>()
  private notifyQueued = false
  private readonly convMsgs = new Map<string, Map<string, ChatMessage>>()
  private readonly dirty = new Set<string>()
  private readonly byId = new Map<string, ChatMessage>()
  private readonly byCid = new Map<string, ChatMessage>()
  private readonly receipts = new Map<string, 'delivered' | 'read'>()
  private readonly inboxLo = new Map<string, number>()
  private readonly inboxMore = new Map<string, boolean>()
  private readonly loading = new Set<string>()
  private readonly extraConvs = new Map<string, number>() // opened without messages -> time
  private readonly typingTimers = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly nameRequested = new Set<string>()
  // The server's read state, as it said it: the chat list, read markers
  // (this device's and those echoed from the user's others), the groups'
  // read_seq. Nothing of it is stored on the device.
  private readonly summaries = new Map<string, Summary>()
  private readonly convRead = new Map<string, number>()
  private readonly inboxRead = new Map<string, number>() // a read marker of a whole inbox (no `with`)
  private summariesLoaded = false
  private summariesLoading = false
  private ownLoaded = false
  // Groups: their last known names, and the ones the user was removed from.
  private readonly groupNames = new Map<string, { name: string; seq: number }>()
  private readonly former = new Map<string, FormerGroup>()
  private readonly noticeSeq = new Map<string, number>()
  private readonly formerLoaded = new Set<string>()
  private readonly systemEntries = new Map<string, GroupEventEntry>()
  private readonly systemByUser = new Map<string, Set<string>>()
  private open: string | undefined
  private visible = true
  private offs: (() => void)[] = []

  constructor(
    readonly client: ParleyClient,
    private readonly storage: KeyValueStorage,
    private readonly now: () => number = Date.now,
  ) {
    this.state = this.empty()
    this.offs = [
      client.on('state', (s, detail) => this.onState(s, detail)),
      client.on('entries', (inbox, es, source, more) => this.onEntries(inbox, es, source, more)),
      client.on('outbox', (m) => this.onOutbox(m)),
      client.on('typing', (conv, from) => this.onTyping(conv, from)),
      client.on('presence', (p) => this.patch({ presence: { ...this.state.presence, [p.user]: p } })),
      client.on('groups', (gs) => this.onGroups(gs)),
    ]
    // Created after sign-in: what the client has already delivered is read here.
    if (client.user) this.attach(true)
  }

  private empty(): ChatState {
    return {
      user: this.client.user,
      connection: this.client.state,
      ready: false,
      conversations: [],
      messages: {},
      history: {},
      names: {},
      presence: {},
      typing: {},
      groups: {},
    }
  }

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  getState = (): ChatState => this.state

  /** Stops listening to the client. */
  close(): void {
    for (const off of this.offs) off()
    for (const t of this.typingTimers.values()) clearTimeout(t)
  }

  private patch(p: Partial<ChatState>) {
    this.state = { ...this.state, ...p }
    this.schedule()
  }

  private schedule() {
    if (this.notifyQueued) return
    this.notifyQueued = true
    queueMicrotask(() => {
      this.notifyQueued = false
      this.rebuild()
      for (const fn of [...this.listeners]) fn()
    })
  }

  private get me(): string {
    return this.client.user ?? ''
  }

  private onState(s: ConnectionState, detail?: string) {
    if (s === 'signed-out') {
      this.reset()
      return
    }
    if (this.state.user !== this.client.user) {
      this.reset()
      if (this.client.user) this.attach(false)
    }
    this.patch({ connection: s, connectionDetail: s === 'online' ? undefined : detail })
    // The chat list could not be read earlier: try again with the connection.
    if (s === 'online' && this.ownLoaded && !this.summariesLoaded) void this.loadSummaries()
  }

  private reset() {
    this.convMsgs.clear()
    this.byId.clear()
    this.byCid.clear()
    this.receipts.clear()
    this.inboxLo.clear()
    this.inboxMore.clear()
    this.extraConvs.clear()
    this.summaries.clear()
    this.convRead.clear()
    this.inboxRead.clear()
    this.summariesLoaded = this.summariesLoading = this.ownLoaded = false
    this.groupNames.clear()
    this.former.clear()
    this.noticeSeq.clear()
    this.formerLoaded.clear()
    this.systemEntries.clear()
    this.systemByUser.clear()
    this.nameRequested.clear()
    this.state = this.empty()
    for (const m of this.client.outbox) this.onOutbox(m)
    this.schedule()
  }

  /**
   * Takes up a signed-in user: the groups it was removed from (kept on the
   * device), and, when the store comes after the client already started,
   * what the client has: its outbox, groups and presence, and the newest
   * page of each inbox it has read (the newest page of the others is still
   * to come, as an 'entries' event).
   */
  private attach(late: boolean) {
    const user = this.client.user!
    this.requestName(user)
    void this.loadFormer(user)
    void this.storage.removeItem(`parley.read.${user}`) // the read state earlier versions kept on the device
    if (!late) return
    for (const m of this.client.outbox) this.onOutbox(m)
    const presence: Record<string, Presence> = {}
    for (const p of this.client.presence) presence[p.user] = p
    this.patch({ presence })
    if (this.client.groups) this.onGroups([...this.client.groups])
    for (const { inbox, ready } of this.client.inboxes) {
      if (ready) void this.loadNewest(inbox)
    }
  }

  /** The newest page of an inbox, read here rather than from the client (a store that came late, a former group). */
  private async loadNewest(inbox: InboxTopic, attempt = 0): Promise<void> {
    const user = this.client.user
    try {
      const page = await this.client.api.messages(inbox, { limit: 100 })
      if (this.client.user !== user) return
      const es = page.entries.filter((e) => e.seq > 0).sort((a, b) => a.seq - b.seq)
      this.onEntries(inbox, es, 'latest', page.more)
    } catch (err) {
      if (this.client.user !== user) return
      if (err instanceof ApiError && (err.status === 403 || err.status === 404)) {
        // Not readable (any more): a former group the user never could read.
        const g = inbox.startsWith('g/') ? inbox.slice(2) : undefined
        if (g && this.former.delete(g)) {
          this.saveFormer()
          this.schedule()
        }
        return
      }
      if (attempt < 5) setTimeout(() => void this.loadNewest(inbox, attempt + 1), 1000 * 2 ** attempt)
    }
  }

  // --- entries ---

  private onEntries(inbox: InboxTopic, entries: Entry[], source: Source | 'older', more?: boolean) {
    if (source === 'latest') {
      const lo = entries.length ? entries[0].seq : 1
      if (!this.inboxLo.has(inbox) || lo <= this.inboxLo.get(inbox)!) {
        this.inboxMore.set(inbox, !!more)
        this.inboxLo.set(inbox, lo)
      }
    }
    for (const e of entries) this.add(e, source)
    if (source === 'latest' && inbox === userInbox(this.me) && !this.ownLoaded) {
      this.ownLoaded = true
      void this.loadSummaries()
    }
    this.markOpenRead()
    this.schedule()
  }

  private add(e: Entry, source: Source | 'older') {
    const me = this.me
    switch (e.type) {
      case 'msg':
        this.addMessage(e)
        return
      case 'receipt': {
        // A group's receipt counts members: delivered (or read) when all
        // the other members have it.
        const partial = e.count !== undefined && e.of !== undefined && e.count < e.of
        const status = e.status === 'read' ? 'read' : e.status === 'delivered' ? 'delivered' : undefined
        if (status && !partial) {
          for (const id of e.ids) this.applyReceipt(id, status)
        }
        return
      }
      case 'error': {
        const m = e.cid ? this.byCid.get(e.cid) : undefined
        if (m && m.status !== 'sent' && m.status !== 'delivered' && m.status !== 'read') {
          this.update(m, { status: 'failed', reason: e.reason || 'refused' })
        }
        return
      }
      case 'read': {
        // A read marker of the user's, echoed to this device:
        // {"for":"u/me","with":"bob","read_seq":57} or {"for":"g/team","read_seq":12}.
        if (e.from !== me || !e.for) return
        const conv = e.for.startsWith('g/') ? e.for : e.with ? userInbox(e.with) : undefined
        if (conv) {
          this.setRead(conv, e.read_seq)
        } else if ((this.inboxRead.get(e.for) ?? 0) < e.read_seq) {
          this.inboxRead.set(e.for, e.read_seq)
          for (const k of this.convMsgs.keys()) this.dirty.add(k)
        }
        return
      }
      case 'typing':
        return
      case 'group_created':
      case 'member_added':
      case 'member_removed':
      case 'renamed':
      case 'history_changed':
        // In a group's inbox: shown in the conversation (the client reads
        // the group list again). In the user's own inbox, a notice of being
        // added or removed: the membership changed.
        if (e.inbox.startsWith('g/')) {
          this.addSystem(e)
          if ((e.type === 'group_created' || e.type === 'renamed') && e.name) {
            const g = e.inbox.slice(2)
            if ((this.groupNames.get(g)?.seq ?? -1) < e.seq) {
              this.groupNames.set(g, { name: e.name, seq: e.seq })
              this.dirty.add(e.inbox)
            }
          }
        } else if ((e.type === 'member_added' || e.type === 'member_removed') && e.for?.startsWith('g/') && e.user === me && source !== 'older') {
          this.onNotice(e.for.slice(2), e.type === 'member_added' ? undefined : e.by === e.user ? 'left' : 'removed', e.seq, e.name)
        }
        return
    }
  }

  /** A notice in the user's inbox: added to a group (how undefined), or removed from it. */
  private onNotice(group: string, how: 'removed' | 'left' | undefined, seq: number, name?: string) {
    if ((this.noticeSeq.get(group) ?? 0) >= seq) return
    this.noticeSeq.set(group, seq)
    const prev = this.former.get(group)
    if (prev && prev.seq >= seq) return
    if (how) {
      this.former.set(group, { group, how, name, seq })
      this.loadFormerHistory(group)
    } else if (!this.former.delete(group)) {
      return
    }
    this.saveFormer()
    this.dirty.add(`g/${group}`)
    this.schedule()
  }

  private async loadFormer(user: string) {
    const list = await readJSON<FormerGroup[]>(this.storage, formerKey(user))
    if (!list || this.client.user !== user) return
    for (const f of list) {
      if (!f?.group || (this.former.get(f.group)?.seq ?? 0) >= f.seq) continue
      if ((this.noticeSeq.get(f.group) ?? 0) > f.seq) continue
      this.former.set(f.group, f)
      this.loadFormerHistory(f.group)
    }
    this.schedule()
  }

  private saveFormer() {
    if (this.client.user) void writeJSON(this.storage, formerKey(this.client.user), [...this.former.values()])
  }

  /** A former group's history up to the removal (GET /v1/messages allows it), when none of it is here. */
  private loadFormerHistory(group: string) {
    const inbox = `g/${group}`
    if (this.formerLoaded.has(group) || this.inboxLo.has(inbox)) return
    this.formerLoaded.add(group)
    void this.loadNewest(inbox)
  }

  private convMap(conv: string): Map<string, ChatMessage> {
    let m = this.convMsgs.get(conv)
    if (!m) {
      m = new Map()
      this.convMsgs.set(conv, m)
    }
    return m
  }

  private addMessage(e: MsgEntry) {
    if (this.byId.has(e.id)) return
    const me = this.me
    const conv = conversationOf(e, me)
    const mine = e.from === me
    const pending = mine && e.cid ? this.byCid.get(e.cid) : undefined
    const msg: ChatMessage = {
      key: pending?.key ?? (mine && e.cid ? e.cid : e.id),
      id: e.id,
      cid: e.cid,
      seq: e.seq,
      inbox: e.inbox,
      conversation: conv,
      from: e.from,
      ts: e.ts,
      kind: 'msg',
      text: textOf(e.body),
      body: e.body,
      mine,
      status: mine ? (this.receipts.get(e.id) ?? 'sent') : undefined,
    }
    if (pending && pending.conversation !== conv) this.convMap(pending.conversation).delete(pending.key)
    this.convMap(conv).set(msg.key, msg)
    this.byId.set(e.id, msg)
    if (e.cid && mine) this.byCid.set(e.cid, msg)
    this.dirty.add(conv)
    this.stopTyping(conv, e.from)
    this.requestName(e.from)
    if (!conv.startsWith('g/')) this.client.watchPresence([conv.slice(2)])
  }

  /** The line a group event shows as, with the names known so far. */
  private systemText(e: GroupEventEntry): string {
    const who = (u: string, object = false) => (u === this.me ? (object ? 'you' : 'You') : (this.state.names[u] ?? u))
    switch (e.type) {
      case 'group_created':
        return `${who(e.by)} created the group “${e.name}”`
      case 'member_added':
        return `${who(e.by)} added ${who(e.user, true)}`
      case 'member_removed':
        return e.by === e.user ? `${who(e.user)} left` : `${who(e.by)} removed ${who(e.user, true)}`
      case 'renamed':
        return `${who(e.by)} renamed the group to “${e.name}”`
      case 'history_changed':
        return e.history === 'full'
          ? `${who(e.by)} let new members read the earlier history`
          : `${who(e.by)} let new members read from when they join`
    }
  }

  private addSystem(e: GroupEventEntry) {
    if (this.byId.has(e.id)) return
    const conv = e.inbox
    const text = this.systemText(e)
    // Written again when a name comes.
    for (const u of e.type === 'member_added' || e.type === 'member_removed' ? [e.by, e.user] : [e.by]) {
      if (!u || u === this.me) continue
      let ids = this.systemByUser.get(u)
      if (!ids) this.systemByUser.set(u, (ids = new Set()))
      ids.add(e.id)
      this.requestName(u)
    }
    this.systemEntries.set(e.id, e)
    const msg: ChatMessage = {
      key: e.id,
      id: e.id,
      seq: e.seq,
      inbox: e.inbox,
      conversation: conv,
      from: e.from,
      ts: e.ts,
      kind: 'system',
      text,
      mine: false,
    }
    this.convMap(conv).set(msg.key, msg)
    this.byId.set(e.id, msg)
    this.dirty.add(conv)
  }

  private applyReceipt(id: string, status: 'delivered' | 'read') {
    const prev = this.receipts.get(id)
    if (prev && statusRank[prev] >= statusRank[status]) return
    this.receipts.set(id, status)
    const m = this.byId.get(id)
    if (m?.mine && statusRank[m.status ?? 'sent'] < statusRank[status]) this.update(m, { status })
  }

  private update(m: ChatMessage, p: Partial<ChatMessage>) {
    const next = { ...m, ...p }
    this.convMap(m.conversation).set(m.key, next)
    if (next.id) this.byId.set(next.id, next)
    if (next.cid) this.byCid.set(next.cid, next)
    this.dirty.add(m.conversation)
    this.schedule()
  }

  private onOutbox(o: OutgoingMessage) {
    const existing = this.byCid.get(o.cid)
    if (existing?.id) return // stored already: its ticks come from entries and receipts
    const status: MessageStatus = o.status
    if (existing) {
      this.update(existing, { status, reason: o.reason })
      return
    }
    if (o.status === 'sent') return
    const msg: ChatMessage = {
      key: o.cid,
      cid: o.cid,
      conversation: o.to,
      from: this.me,
      ts: o.createdAt,
      kind: 'msg',
      text: textOf(o.body),
      body: o.body,
      mine: true,
      status,
      reason: o.reason,
    }
    this.convMap(o.to).set(msg.key, msg)
    this.byCid.set(o.cid, msg)
    this.dirty.add(o.to)
    this.schedule()
  }

  // --- typing, presence, groups ---

  private onTyping(conv: string, from: string) {
    const key = `${conv} ${from}`
    const cur = this.state.typing[conv] ?? []
    if (!cur.includes(from)) this.patch({ typing: { ...this.state.typing, [conv]: [...cur, from] } })
    const old = this.typingTimers.get(key)
    if (old) clearTimeout(old)
    // Notices come every few seconds while someone types.
    this.typingTimers.set(
      key,
      setTimeout(() => this.stopTyping(conv, from), 6000),
    )
  }

  private stopTyping(conv: string, from: string) {
    const key = `${conv} ${from}`
    const t = this.typingTimers.get(key)
    if (t) clearTimeout(t)
    this.typingTimers.delete(key)
    const cur = this.state.typing[conv]
    if (cur?.includes(from)) {
      const next = cur.filter((u) => u !== from)
      const typing = { ...this.state.typing }
      if (next.length) typing[conv] = next
      else delete typing[conv]
      this.patch({ typing })
    }
  }

  /** Whether the user was removed from the group (or left it) and is not back in it. */
  private isFormer(group: string): boolean {
    return this.former.has(group) && !this.state.groups[group]
  }

  private onGroups(gs: Group[]) {
    const groups: Record<string, Group> = {}
    for (const g of gs) {
      groups[g.id] = g
      for (const u of g.members) this.requestName(u)
      // A member (a former group it is back in shows as current), read as far as the server says.
      if (g.last_seq >= (this.groupNames.get(g.id)?.seq ?? 0)) this.groupNames.set(g.id, { name: g.name, seq: g.last_seq })
      this.setRead(`g/${g.id}`, g.read_seq)
    }
    // A group left behind without a notice yet (the list is read again on
    // connecting): its name and messages stay; the notice marks it former.
    for (const id of Object.keys(this.state.groups)) if (!groups[id]) this.dirty.add(`g/${id}`)
    this.patch({ groups })
  }

  private setRead(conv: string, seq: number) {
    if ((this.convRead.get(conv) ?? 0) >= seq) return
    this.convRead.set(conv, seq)
    this.dirty.add(conv)
    this.schedule()
  }

  private requestName(user: string) {
    if (!user || this.nameRequested.has(user)) return
    this.nameRequested.add(user)
    this.client.api.user(user).then(
      (u) => {
        if (!u?.name || this.client.user === undefined) return
        this.patch({ names: { ...this.state.names, [user]: u.name } })
        for (const id of this.systemByUser.get(user) ?? []) {
          const m = this.byId.get(id)
          const e = this.systemEntries.get(id)
          if (m && e) this.update(m, { text: this.systemText(e) })
        }
      },
      () => this.nameRequested.delete(user),
    )
  }

  /**
   * Reads GET /v1/me/conversations: conversations beyond the newest page,
   * and the server's read cursors and unread counts. Ready after it (or
   * after it failed: it is read again on the next connection).
   */
  private async loadSummaries() {
    if (this.summariesLoading || this.summariesLoaded) return
    this.summariesLoading = true
    const user = this.client.user
    let list: ConversationSummary[] | undefined
    try {
      list = await this.client.api.conversations()
    } catch {
      list = undefined
    } finally {
      if (this.client.user === user) this.summariesLoading = false
    }
    if (this.client.user !== user) return
    if (list) {
      for (const c of list) {
        if (c.last) this.add(c.last, 'older')
        else if (!this.convMsgs.has(c.key)) this.extraConvs.set(c.key, 0)
        this.summaries.set(c.key, { unread: c.unread, readSeq: c.read_seq, top: c.last?.seq ?? c.read_seq })
        this.setRead(c.key, c.read_seq)
        this.dirty.add(c.key)
        if (c.peer) this.requestName(c.peer)
      }
      this.summariesLoaded = true
      for (const k of this.convMsgs.keys()) this.dirty.add(k)
    }
    this.patch({ ready: true })
  }

  // --- what the UI does ---

  /** Sends a text message. */
  send(conversation: InboxTopic, text: string): void {
    const t = text.trim()
    if (!t) return
    this.client.stoppedTyping(conversation)
    this.extraConvs.delete(conversation)
    this.client.send(conversation, { text: t })
  }

  retry(m: ChatMessage): void {
    if (m.cid) this.client.retry(m.cid)
  }

  discard(m: ChatMessage): void {
    if (!m.cid || m.id) return
    this.client.discard(m.cid)
    this.convMap(m.conversation).delete(m.key)
    this.byCid.delete(m.cid)
    this.dirty.add(m.conversation)
    this.schedule()
  }

  /** Starts a direct chat (shown even before the first message). */
  startChat(peer: string): InboxTopic {
    const key = userInbox(peer)
    if (!this.convMsgs.get(key)?.size) this.extraConvs.set(key, this.now())
    this.requestName(peer)
    this.client.watchPresence([peer])
    this.dirty.add(key)
    this.schedule()
    return key
  }

  /** The conversation on screen (undefined: none); its messages are marked read while the app is visible. */
  setOpen(conversation: InboxTopic | undefined): void {
    this.open = conversation
    if (conversation && !this.state.history[conversation]) {
      const inbox = inboxOf(conversation, this.me)
      this.patch({ history: { ...this.state.history, [conversation]: { more: this.inboxMore.get(inbox) ?? true, loading: false } } })
    }
    this.markOpenRead()
  }

  setVisible(visible: boolean): void {
    this.visible = visible
    this.markOpenRead()
  }

  private markOpenRead() {
    const conv = this.open
    if (!conv || !this.visible) return
    if (conv.startsWith('g/') && this.isFormer(conv.slice(2))) return // no read markers in a group one has left
    let top = 0
    for (const m of this.convMap(conv).values()) if (m.seq && m.seq > top && !m.mine) top = m.seq
    let topAny = 0
    for (const m of this.convMap(conv).values()) if (m.seq && m.seq > topAny) topAny = m.seq
    if (this.readCursor(conv) >= topAny) return
    this.setRead(conv, topAny)
    if (top > 0) this.client.markRead(inboxOf(conv, this.me), top, conv.startsWith('u/') ? conv.slice(2) : undefined)
  }

  /** Loads older messages of a conversation (infinite scroll). Resolves when done. */
  async loadOlder(conversation: InboxTopic, want = 30): Promise<void> {
    const inbox = inboxOf(conversation, this.me)
    if (this.loading.has(inbox)) return
    if (!this.inboxLo.has(inbox)) return // the newest page is not there yet
    this.loading.add(inbox)
    this.setHistory(conversation, true)
    try {
      const target = this.count(conversation) + want
      for (let pages = 0; pages < 10 && this.inboxMore.get(inbox) && this.count(conversation) < target; pages++) {
        const before = this.inboxLo.get(inbox)!
        const page = await this.client.history(inbox, before, 200)
        const es = page.entries.filter((e) => e.seq > 0 && e.seq < before).sort((a, b) => a.seq - b.seq)
        for (const e of es) this.add(e, 'older')
        if (es.length) this.inboxLo.set(inbox, es[0].seq)
        this.inboxMore.set(inbox, page.more && es.length > 0)
        this.schedule()
      }
    } catch (err) {
      // Try again on the next scroll.
      void err
    } finally {
      this.loading.delete(inbox)
      this.setHistory(conversation, false)
    }
  }

  private setHistory(conv: string, loading: boolean) {
    const inbox = inboxOf(conv, this.me)
    this.patch({ history: { ...this.state.history, [conv]: { more: this.inboxMore.get(inbox) ?? true, loading } } })
  }

  private count(conv: string): number {
    let n = 0
    for (const m of this.convMap(conv).values()) if (m.kind === 'msg' && m.seq) n++
    return n
  }

  // --- snapshot ---

  private readCursor(conv: string): number {
    return Math.max(this.convRead.get(conv) ?? 0, conv.startsWith('g/') ? 0 : (this.inboxRead.get(userInbox(this.me)) ?? 0))
  }

  /**
   * Unread messages of a conversation: the server's count while its read
   * cursor has not moved since (plus what came after), else the messages
   * from others after the cursor. None before the server's chat list is
   * read, and none in a group the user is no longer in.
   */
  private unreadOf(conv: string, list: ChatMessage[]): number {
    if (!this.summariesLoaded) return 0
    if (conv.startsWith('g/') && this.isFormer(conv.slice(2))) return 0
    const cursor = this.readCursor(conv)
    const s = this.summaries.get(conv)
    let local = 0
    let after = 0
    for (const m of list) {
      if (m.mine || m.kind !== 'msg' || !m.seq) continue
      if (m.seq > cursor) local++
      if (s && m.seq > Math.max(s.top, cursor)) after++
    }
    if (s && cursor <= s.readSeq) return Math.max(local, s.unread + after)
    return local
  }

  private groupTitle(group: string): string {
    return this.state.groups[group]?.name ?? this.groupNames.get(group)?.name ?? this.former.get(group)?.name ?? 'Group'
  }

  private rebuild() {
    const messages = { ...this.state.messages }
    for (const conv of this.dirty) {
      const list = [...(this.convMsgs.get(conv)?.values() ?? [])]
      list.sort((a, b) => {
        if (a.seq && b.seq) return a.seq - b.seq
        if (a.seq) return -1
        if (b.seq) return 1
        return a.ts - b.ts
      })
      messages[conv] = list
    }
    this.dirty.clear()
    const convs: Conversation[] = []
    const keys = new Set([...this.convMsgs.keys(), ...this.extraConvs.keys()])
    for (const g of Object.keys(this.state.groups)) keys.add(`g/${g}`)
    for (const g of this.former.keys()) keys.add(`g/${g}`)
    for (const key of keys) {
      const list = messages[key] ?? []
      const group = key.startsWith('g/') ? key.slice(2) : undefined
      const former = group && this.isFormer(group) ? this.former.get(group)!.how : undefined
      if (list.length === 0 && !this.extraConvs.has(key) && !(group && (this.state.groups[group] || former))) continue
      const peer = group ? undefined : key.slice(2)
      const last = list[list.length - 1]
      const title = group
        ? this.groupTitle(group)
        : peer === this.me
          ? `${this.state.names[peer!] ?? peer} (you)`
          : (this.state.names[peer!] ?? peer!)
      convs.push({
        key,
        kind: group ? 'group' : 'direct',
        peer,
        group,
        title,
        ...(former ? { former } : {}),
        last,
        unread: this.unreadOf(key, list),
        updatedAt: last?.ts ?? this.extraConvs.get(key) ?? 0,
      })
    }
    convs.sort((a, b) => b.updatedAt - a.updatedAt || a.title.localeCompare(b.title))
    this.state = { ...this.state, user: this.client.user, messages, conversations: convs }
  }
}
