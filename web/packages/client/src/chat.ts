import type { Capabilities, ConnectionState, OutgoingMessage, ParleyClient } from './client.js'
import type { Source } from './sequencer.js'
import { readJSON, writeJSON, type KeyValueStorage } from './storage.js'
import { type Entry, type GroupEventEntry, type Group, type InboxTopic, type MessageBody, type MsgEntry, type Presence, userInbox } from './types.js'

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
  caps: Capabilities
  /** Whether the newest page of the user's inbox was read. */
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
  groups: Record<string, Group>
}

const statusRank: Record<MessageStatus, number> = { failed: 0, queued: 1, sending: 2, sent: 3, delivered: 4, read: 5 }

interface ReadState {
  /** Per inbox: everything at or below is read (the device's starting point, or a read marker from another device). */
  base: Record<string, number>
  /** Per conversation: the highest seq read. */
  convs: Record<string, number>
}

const readKey = (user: string) => `parley.read.${user}`

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
  private readonly summaryUnread = new Map<string, number>()
  private readonly extraConvs = new Map<string, number>() // opened without messages -> time
  private readonly typingTimers = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly nameRequested = new Set<string>()
  private read: ReadState = { base: {}, convs: {} }
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
      client.on('caps', (caps) => this.patch({ caps })),
    ]
  }

  private empty(): ChatState {
    return {
      user: this.client.user,
      connection: this.client.state,
      caps: { ...this.client.caps },
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
      void this.loadReadState()
      if (this.client.user) this.requestName(this.client.user)
    }
    this.patch({ connection: s, connectionDetail: s === 'online' ? undefined : detail })
  }

  private reset() {
    this.convMsgs.clear()
    this.byId.clear()
    this.byCid.clear()
    this.receipts.clear()
    this.inboxLo.clear()
    this.inboxMore.clear()
    this.summaryUnread.clear()
    this.extraConvs.clear()
    this.read = { base: {}, convs: {} }
    this.nameRequested.clear()
    this.state = this.empty()
    for (const m of this.client.outbox) this.onOutbox(m)
    this.schedule()
  }

  private async loadReadState() {
    const user = this.client.user
    if (!user) return
    const r = await readJSON<ReadState>(this.storage, readKey(user))
    if (r && this.client.user === user) {
      this.read = { base: { ...r.base, ...this.read.base }, convs: { ...r.convs, ...this.read.convs } }
      this.dirtyAll()
    }
  }

  private saveReadState() {
    if (this.client.user) void writeJSON(this.storage, readKey(this.client.user), this.read)
  }

  private dirtyAll() {
    for (const k of this.convMsgs.keys()) this.dirty.add(k)
    this.schedule()
  }

  // --- entries ---

  private onEntries(inbox: InboxTopic, entries: Entry[], source: Source | 'older', more?: boolean) {
    if (source === 'latest') {
      this.inboxMore.set(inbox, !!more)
      this.inboxLo.set(inbox, entries.length ? entries[0].seq : 1)
      if (this.read.base[inbox] === undefined) {
        // A device's first look at an inbox: what is already there counts as read.
        this.read.base[inbox] = entries.length ? entries[entries.length - 1].seq : 0
        this.saveReadState()
      }
    }
    for (const e of entries) this.add(e, source)
    if (source === 'latest' && inbox === userInbox(this.me) && !this.state.ready) {
      this.patch({ ready: true })
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
        const upto = e.read_seq
        const target = e.for
        const conv = target.startsWith('g/') ? target : e.with ? userInbox(e.with) : undefined
        if (conv) {
          if ((this.read.convs[conv] ?? 0) >= upto) return
          this.read.convs[conv] = upto
          this.summaryUnread.delete(conv)
          this.dirty.add(conv)
        } else {
          if ((this.read.base[target] ?? 0) >= upto) return
          this.read.base[target] = upto
          this.dirtyAll()
        }
        this.saveReadState()
        return
      }
      case 'typing':
        return
      case 'group_created':
      case 'member_added':
      case 'member_removed':
      case 'renamed':
      case 'history_changed':
        // In a group's inbox: shown in the conversation. In the user's own
        // inbox (a notice of being added or removed): nothing to show, the
        // groups changed.
        if (e.inbox.startsWith('g/')) this.addSystem(e)
        if (source !== 'latest' && source !== 'older') void this.client.refreshGroups()
        return
      default:
        // An entry this app does not know yet (the server is growing
        // features): groups may have changed.
        if (source !== 'latest' && source !== 'older' && e.inbox === userInbox(me)) void this.client.refreshGroups()
    }
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

  private addSystem(e: GroupEventEntry) {
    if (this.byId.has(e.id)) return
    const conv = e.inbox
    const who = (u: string) => (u === this.me ? 'You' : (this.state.names[u] ?? u))
    let text: string
    switch (e.type) {
      case 'group_created':
        text = `${who(e.by)} created the group “${e.name}”`
        break
      case 'member_added':
        text = `${who(e.by)} added ${who(e.user)}`
        break
      case 'member_removed':
        text = e.by === e.user ? `${who(e.user)} left` : `${who(e.by)} removed ${who(e.user)}`
        break
      case 'renamed':
        text = `${who(e.by)} renamed the group to “${e.name}”`
        break
      case 'history_changed':
        text =
          e.history === 'full'
            ? `${who(e.by)} let new members read the earlier history`
            : `${who(e.by)} let new members read from when they join`
        break
    }
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

  private onGroups(gs: Group[]) {
    const groups: Record<string, Group> = {}
    for (const g of gs) {
      groups[g.id] = g
      for (const u of g.members) this.requestName(u)
    }
    this.patch({ groups })
  }

  private requestName(user: string) {
    if (!user || this.nameRequested.has(user)) return
    this.nameRequested.add(user)
    this.client.api.user(user).then(
      (u) => {
        if (u?.name) this.patch({ names: { ...this.state.names, [user]: u.name } })
      },
      () => this.nameRequested.delete(user),
    )
  }

  /** Reads GET /v1/me/conversations when the server has it: conversations beyond the newest page, unread counts. */
  private async loadSummaries() {
    const list = await this.client.conversations()
    if (!list) return
    for (const c of list) {
      if (c.last) this.add(c.last, 'older')
      else if (!this.convMsgs.has(c.key)) this.extraConvs.set(c.key, 0)
      this.read.convs[c.key] = Math.max(this.read.convs[c.key] ?? 0, c.read_seq)
      this.summaryUnread.set(c.key, c.unread)
      this.dirty.add(c.key)
      if (c.peer) this.requestName(c.peer)
    }
    this.schedule()
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
    // Back to the app: groups may have changed meanwhile.
    if (visible && !this.visible && this.client.caps.groups) void this.client.refreshGroups()
    this.visible = visible
    this.markOpenRead()
  }

  private markOpenRead() {
    const conv = this.open
    if (!conv || !this.visible) return
    let top = 0
    for (const m of this.convMap(conv).values()) if (m.seq && m.seq > top && !m.mine) top = m.seq
    let topAny = 0
    for (const m of this.convMap(conv).values()) if (m.seq && m.seq > topAny) topAny = m.seq
    const had = this.summaryUnread.get(conv)
    this.summaryUnread.delete(conv)
    if ((this.read.convs[conv] ?? 0) >= topAny && !had) return
    this.read.convs[conv] = Math.max(this.read.convs[conv] ?? 0, topAny)
    this.saveReadState()
    this.dirty.add(conv)
    this.schedule()
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
    return Math.max(this.read.convs[conv] ?? 0, this.read.base[inboxOf(conv, this.me)] ?? 0)
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
    for (const key of keys) {
      const list = messages[key] ?? []
      if (list.length === 0 && !this.extraConvs.has(key) && !key.startsWith('g/')) continue
      const group = key.startsWith('g/') ? key.slice(2) : undefined
      if (group && !this.state.groups[group] && this.client.caps.groups && list.length === 0) continue
      const peer = group ? undefined : key.slice(2)
      const last = list[list.length - 1]
      const cursor = this.readCursor(key)
      let unread = 0
      for (const m of list) if (!m.mine && m.kind === 'msg' && m.seq && m.seq > cursor) unread++
      unread = Math.max(unread, this.summaryUnread.get(key) ?? 0)
      const title = group
        ? (this.state.groups[group]?.name ?? group)
        : peer === this.me
          ? `${this.state.names[peer!] ?? peer} (you)`
          : (this.state.names[peer!] ?? peer!)
      convs.push({
        key,
        kind: group ? 'group' : 'direct',
        peer,
        group,
        title,
        last,
        unread,
        updatedAt: last?.ts ?? this.extraConvs.get(key) ?? 0,
      })
    }
    convs.sort((a, b) => b.updatedAt - a.updatedAt || a.title.localeCompare(b.title))
    this.state = { ...this.state, user: this.client.user, messages, conversations: convs }
  }
}
