import { ApiError, ParleyApi } from './api.js'
import { Emitter } from './emitter.js'
import { InboxSequencer, type Source } from './sequencer.js'
import { readJSON, writeJSON, type KeyValueStorage } from './storage.js'
import type { Transport, TransportFactory } from './transport.js'
import {
  type Entry,
  type Group,
  type HistoryPage,
  type InboxTopic,
  type MessageBody,
  type Presence,
  isRetryable,
  presenceTopic,
  reasonText,
  userInbox,
} from './types.js'
import { decodeEntry, decodePresence, encodeMessage, encodePresenceStatus, encodeRead, encodeTyping, parseJSON } from './wire.js'

/** The connection as people should see it. */
export type ConnectionState =
  | 'signed-out' // no session
  | 'connecting' // first attempt, or trying again after 'offline'
  | 'online' // connected and subscribed
  | 'offline' // lost: a reconnect is scheduled, or the platform said the network is down (networkChanged)
  | 'unauthorized' // the server refused the token: sign in again

/** A message in the outbox: not yet acknowledged (PUBACK) by the server. */
export interface OutgoingMessage {
  cid: string
  /** The topic it is published to: `u/{peer}` or `g/{group}`. */
  to: InboxTopic
  body: MessageBody
  /** Local time it was written, ms. */
  createdAt: number
  /** queued: waiting to be published; sending: awaiting PUBACK; sent: PUBACK 0x00 (stored); failed: refused. */
  status: 'queued' | 'sending' | 'sent' | 'failed'
  attempts: number
  /** Why it failed, or why it is being retried. */
  reason?: string
  code?: number
  /** Not before this time (backoff after 0x80 or 0x97), ms. */
  notBefore?: number
}

export interface ClientEvents {
  state: (state: ConnectionState, detail?: string) => void
  /** Entries of an inbox, in seq order and each once. `latest` is the newest page (more: older exist). */
  entries: (inbox: InboxTopic, entries: Entry[], source: Source, more?: boolean) => void
  /** Live-only typing notices: conversation is `u/{peer}` or `g/{group}`. */
  typing: (conversation: InboxTopic, from: string) => void
  presence: (p: Presence) => void
  /** A message of the outbox changed status. */
  outbox: (m: OutgoingMessage) => void
  /** The groups the user belongs to: read on connecting and when a group event or notice says they changed. */
  groups: (groups: Group[]) => void
  /** Problems worth telling someone about (a fetch that failed, …). */
  error: (err: Error) => void
}

export interface ClientOptions {
  /** The HTTP API's base URL: "" for the page's own origin. */
  apiUrl: string
  /**
   * Where MQTT is: ws(s)://host:8083/mqtt (MQTT over WebSocket: browsers,
   * React Native), or mqtt(s)://host:1883 (TCP: Node).
   */
  mqttUrl: string
  storage: KeyValueStorage
  transport: TransportFactory
  fetch?: ConstructorParameters<typeof ParleyApi>[1]
  /** The device's client id is `{user}/{devicePrefix}-{random}`. Default "web". */
  devicePrefix?: string
  /**
   * Which of the device's ids to use: 0 (the default) for the first, 1, 2, …
   * for further copies of the app running at the same time on the same
   * storage (browser tabs), which must not share a client id: MQTT would
   * have them take the session over from each other, back and forth.
   */
  deviceSlot?: number
  /** Session expiry, seconds. Default 7 days. */
  sessionExpiry?: number
  /** MQTT keepalive, seconds. Default 30. */
  keepalive?: number
  /** Reconnect backoff bounds, ms. Default 1 s to 30 s. */
  reconnectDelay?: { min: number; max: number }
  /** Retry backoff after 0x80 and 0x97, ms. Default 500 ms to 30 s. */
  retryDelay?: { min: number; max: number }
  /** How long to wait for a PUBACK before publishing again, ms. Default 15 s. */
  publishTimeout?: number
  /** Entries per history page. Default 100. */
  pageSize?: number
  /** Seconds between typing notices while someone types. Default 3. */
  typingInterval?: number
  random?: () => number
  now?: () => number
}

interface Session {
  user: string
  token: string
  name?: string
}

const SESSION_KEY = 'parley.session'
const deviceKey = (user: string, slot: number) => `parley.device.${user}${slot ? `.${slot}` : ''}`
const outboxKey = (user: string) => `parley.outbox.${user}`

function randomHex(n: number, random: () => number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += Math.floor(random() * 16).toString(16)
  return s
}

function backoff(attempt: number, min: number, max: number, random: () => number): number {
  const d = Math.min(max, min * 2 ** Math.max(0, attempt))
  return Math.round(d / 2 + (random() * d) / 2)
}

/**
 * A Parley client: the session, one MQTT connection with a persistent
 * session and automatic reconnects, the outbox (retried until PUBACK),
 * ordered and de-duplicated inboxes with gap filling and catch-up, groups
 * (followed from their events and the notices in the user's inbox),
 * presence and read markers (docs/protocol.md).
 */
export class ParleyClient extends Emitter<ClientEvents> {
  readonly api: ParleyApi
  private readonly o: Required<Omit<ClientOptions, 'fetch'>>
  private session: Session | undefined
  private clientId: string | undefined
  private _state: ConnectionState = 'signed-out'
  private transport: Transport | undefined
  private generation = 0 // bumps on each connection attempt; late callbacks of older ones are ignored
  private connected = false
  private attempt = 0
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private pumpTimer: ReturnType<typeof setTimeout> | undefined
  private pumping = false
  private queue: OutgoingMessage[] = []
  private readonly sequencers = new Map<InboxTopic, InboxSequencer>()
  private readonly watchedPresence = new Set<string>()
  private readonly subscribedPresence = new Set<string>()
  private readonly pendingReads = new Map<string, number>() // "inbox[ peer]" -> seq
  private readonly readsSent = new Map<string, number>()
  private readonly lastTyping = new Map<InboxTopic, number>()
  private myStatus: 'online' | 'away' = 'online'
  /** The platform said the network is down: no reconnect until it says it is back (or connect()). */
  private networkDown = false
  private groupsRefresh: Promise<Group[] | undefined> | undefined
  private groupsAgain = false
  private _groups: Group[] | undefined
  private readonly lastPresence = new Map<string, Presence>()

  constructor(opts: ClientOptions) {
    super()
    this.o = {
      devicePrefix: 'web',
      deviceSlot: 0,
      sessionExpiry: 7 * 24 * 3600,
      keepalive: 30,
      reconnectDelay: { min: 1000, max: 30_000 },
      retryDelay: { min: 500, max: 30_000 },
      publishTimeout: 15_000,
      pageSize: 100,
      typingInterval: 3,
      random: Math.random,
      now: Date.now,
      ...opts,
    }
    this.api = new ParleyApi(opts.apiUrl, opts.fetch)
  }

  /** The signed-in user, if any. */
  get user(): string | undefined {
    return this.session?.user
  }

  get state(): ConnectionState {
    return this._state
  }

  /** This device's MQTT client id (`{user}/web-…`), once connected. */
  get deviceId(): string | undefined {
    return this.clientId
  }

  /** The messages not yet stored by the server, oldest first. */
  get outbox(): readonly OutgoingMessage[] {
    return this.queue
  }

  private setState(s: ConnectionState, detail?: string) {
    if (s === this._state && detail === undefined) return
    this._state = s
    this.emit('state', s, detail)
  }

  /** The user's groups as last read (GET /v1/me/groups), or undefined before the first read. */
  get groups(): readonly Group[] | undefined {
    return this._groups
  }

  /** The last presence heard of each watched user. */
  get presence(): readonly Presence[] {
    return [...this.lastPresence.values()]
  }

  /** The inboxes followed (`u/{me}`, the groups' `g/{id}`) and whether each one's newest page was read. */
  get inboxes(): { inbox: InboxTopic; ready: boolean }[] {
    return [...this.sequencers.values()].map((sq) => ({ inbox: sq.inbox, ready: sq.ready }))
  }

  private emitPresence(p: Presence) {
    this.lastPresence.set(p.user, p)
    this.emit('presence', p)
  }

  // --- Session ---

  /** Resumes the session kept in storage. Returns whether there was one. */
  async restore(): Promise<boolean> {
    const s = await readJSON<Session>(this.o.storage, SESSION_KEY)
    if (!s?.user || !s.token) return false
    await this.begin(s)
    return true
  }

  async signUp(id: string, password: string, name: string): Promise<void> {
    const r = await this.api.signUp(id, password, name)
    await this.begin({ user: r.id, token: r.token, name: r.name })
  }

  async signIn(id: string, password: string): Promise<void> {
    const r = await this.api.signIn(id, password)
    await this.begin({ user: r.id, token: r.token })
  }

  /** Revokes the token and forgets the session (the device id is kept). */
  async signOut(): Promise<void> {
    const s = this.session
    this.stop()
    if (s) {
      try {
        await this.api.signOut()
      } catch {
        // The token is forgotten either way.
      }
      await this.o.storage.removeItem(outboxKey(s.user))
    }
    await this.o.storage.removeItem(SESSION_KEY)
    this.session = undefined
    this.api.token = undefined
    this.queue = []
    this._groups = undefined
    this.setState('signed-out')
  }

  private async begin(s: Session) {
    this.stop()
    this.session = s
    this.api.token = s.token
    await writeJSON(this.o.storage, SESSION_KEY, s)
    let id = await this.o.storage.getItem(deviceKey(s.user, this.o.deviceSlot))
    if (!id || !id.startsWith(`${s.user}/`)) {
      id = `${s.user}/${this.o.devicePrefix}-${randomHex(8, this.o.random)}`
      await this.o.storage.setItem(deviceKey(s.user, this.o.deviceSlot), id)
    }
    this.clientId = id
    this.queue = ((await readJSON<OutgoingMessage[]>(this.o.storage, outboxKey(s.user))) ?? []).map((m) =>
      m.status === 'sending' ? { ...m, status: 'queued' as const } : m,
    )
    this.watchInbox(userInbox(s.user))
    this.networkDown = false
    this.open()
  }

  // --- Connection ---

  /**
   * Connects (or reconnects now, skipping the backoff wait), also after
   * networkChanged(false): an explicit request to try.
   */
  connect(): void {
    this.networkDown = false
    this.open()
  }

  private open(): void {
    if (!this.session || this._state === 'unauthorized') return
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer)
      this.reconnectTimer = undefined
    }
    if (this.transport) return
    const gen = ++this.generation
    const s = this.session
    this.setState('connecting')
    this.transport = this.o.transport(
      {
        url: this.o.mqttUrl,
        clientId: this.clientId!,
        username: s.user,
        password: s.token,
        sessionExpiry: this.o.sessionExpiry,
        keepalive: this.o.keepalive,
        connectTimeout: 10_000,
        will: { topic: presenceTopic(s.user), payload: JSON.stringify({ user: s.user, status: 'offline' }), retain: true, qos: 1 },
      },
      {
        onConnect: (sessionPresent) => {
          if (gen === this.generation) void this.onConnect(gen, sessionPresent)
        },
        onClose: (err) => {
          if (gen === this.generation) this.onClose(err)
        },
        onMessage: (topic, payload) => {
          if (gen === this.generation) this.onMessage(topic, payload)
        },
      },
    )
  }

  /**
   * Tells the client what the platform knows about the network. Offline
   * drops the connection at once (instead of waiting for the keepalive to
   * time out) and waits: no attempt is made until the network is back
   * (networkChanged(true)) or connect() is called. Online reconnects at
   * once, without waiting for the backoff.
   */
  networkChanged(online: boolean): void {
    if (!this.session) return
    if (online) {
      if (this.networkDown || !this.transport) this.connect()
      return
    }
    this.networkDown = true
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer)
      this.reconnectTimer = undefined
    }
    if (this.transport) this.transport.close(false) // onClose: offline, and no reconnect scheduled
    else if (this._state !== 'unauthorized') this.setState('offline', 'no network')
  }

  /** Closes the connection for good (until connect). */
  disconnect(): void {
    this.stop(true)
    if (this.session) this.setState('offline')
  }

  private stop(keepSession = false) {
    this.generation++
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    if (this.pumpTimer) clearTimeout(this.pumpTimer)
    this.reconnectTimer = this.pumpTimer = undefined
    const t = this.transport
    this.transport = undefined
    this.connected = false
    this.subscribedPresence.clear()
    if (t) t.close(true)
    for (const m of this.queue) if (m.status === 'sending') m.status = 'queued'
    if (!keepSession) {
      for (const sq of this.sequencers.values()) sq.stop()
      this.sequencers.clear()
      this.watchedPresence.clear()
      this.pendingReads.clear()
      this.readsSent.clear()
      this.lastPresence.clear()
      this._groups = undefined
    }
  }

  private async onConnect(gen: number, sessionPresent: boolean) {
    const t = this.transport!
    this.connected = true
    this.attempt = 0
    // Subscribing again is harmless with a session present (the server
    // replays from the device's cursor either way) and needed without one.
    const inboxes = [...this.sequencers.keys()]
    const codes = await Promise.all(inboxes.map((i) => t.subscribe([i], 1).catch(() => [0x80])))
    if (gen !== this.generation) return
    codes.forEach((c, i) => {
      if (c[0] >= 0x80) this.emit('error', new Error(`subscribe ${inboxes[i]} refused (0x${c[0].toString(16)})`))
    })
    this.setState('online')
    for (const sq of this.sequencers.values()) this.startInbox(sq, sessionPresent)
    void this.pump()
    this.flushReads()
    if (this.myStatus === 'away') this.setPresence('away')
    void this.subscribePresence()
    // The group list once per connection; after that, group events and the
    // notices in the user's inbox say when it changed (no polling).
    void this.refreshGroups()
  }

  private onClose(err?: Error & { code?: number }) {
    this.transport = undefined
    this.connected = false
    this.subscribedPresence.clear()
    for (const m of this.queue) {
      if (m.status === 'sending') {
        m.status = 'queued'
        this.emit('outbox', { ...m })
      }
    }
    if (err?.code === 0x86 || err?.code === 0x85 || err?.code === 0x87 || err?.code === 4 || err?.code === 5) {
      this.setState('unauthorized', 'the server refused the session: sign in again')
      return
    }
    if (this.networkDown) {
      // Waiting for the platform to say the network is back.
      this.setState('offline', 'no network')
      return
    }
    const delay = backoff(this.attempt++, this.o.reconnectDelay.min, this.o.reconnectDelay.max, this.o.random)
    this.setState('offline', err?.message)
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      this.open()
    }, delay)
  }

  // --- Inboxes ---

  /** Follows an inbox: subscribes to it and delivers its entries in order. */
  watchInbox(inbox: InboxTopic): void {
    if (this.sequencers.has(inbox)) return
    const sq = new InboxSequencer(inbox, {
      fetchAfter: (after) => this.api.messages(inbox, { after, limit: 500 }),
      deliver: (entries, source) => {
        this.emit('entries', inbox, entries, source)
        this.followGroups(entries)
      },
      onError: (err) => this.emit('error', err instanceof Error ? err : new Error(String(err))),
      retryDelay: (n) => backoff(n, 1000, 30_000, this.o.random),
    })
    this.sequencers.set(inbox, sq)
    if (this.connected && this.transport) {
      void this.transport
        .subscribe([inbox], 1)
        .then(() => this.startInbox(sq, false))
        .catch(() => {})
    }
  }

  /** Stops following an inbox (a group left). */
  unwatchInbox(inbox: InboxTopic): void {
    const sq = this.sequencers.get(inbox)
    if (!sq) return
    sq.stop()
    this.sequencers.delete(inbox)
    if (this.connected && this.transport) void this.transport.unsubscribe([inbox])
  }

  /**
   * The first time: read the newest page as the baseline. After a
   * reconnect: fetch what is above the last seq held. The server also
   * replays from the device's cursor when it kept the session, but it may
   * not have (a server restart, an expired session, a new device id), and
   * repeats are dropped by seq.
   */
  private startInbox(sq: InboxSequencer, _sessionPresent: boolean) {
    if (!sq.ready) void this.loadLatest(sq)
    else sq.catchUp()
  }

  private async loadLatest(sq: InboxSequencer, attempt = 0): Promise<void> {
    try {
      const page = await this.api.messages(sq.inbox, { limit: this.o.pageSize })
      if (sq.ready || this.sequencers.get(sq.inbox) !== sq) return
      const entries = page.entries.filter((e) => e.seq > 0).sort((a, b) => a.seq - b.seq)
      this.emit('entries', sq.inbox, entries, 'latest', page.more)
      sq.setBaseline(entries.length ? entries[entries.length - 1].seq : 0)
    } catch (err) {
      this.emit('error', err as Error)
      if (err instanceof ApiError && err.status === 403) return
      setTimeout(() => void this.loadLatest(sq, attempt + 1), backoff(attempt, 1000, 30_000, this.o.random))
    }
  }

  /**
   * Group events (in a group's inbox) and notices (in the user's own, with
   * `for`) delivered live or by catch-up: a group the user was added to is
   * followed at once, one it was removed from no longer, and the group list
   * is read again (once for a burst).
   */
  private followGroups(entries: Entry[]) {
    let changed = false
    for (const e of entries) {
      switch (e.type) {
        case 'member_added':
        case 'member_removed':
          if (e.for && e.user === this.user) {
            if (e.type === 'member_added') this.watchInbox(e.for)
            else this.unwatchInbox(e.for)
          }
          changed = true
          break
        case 'group_created':
        case 'renamed':
        case 'history_changed':
          changed = true
      }
    }
    if (changed) void this.refreshGroups()
  }

  /** Older history of an inbox: the page just below `before`, oldest first. */
  history(inbox: InboxTopic, before: number, limit = this.o.pageSize): Promise<HistoryPage> {
    return this.api.messages(inbox, { before, limit })
  }

  private onMessage(topic: string, payload: string) {
    if (topic.startsWith('p/')) {
      const p = payload ? decodePresence(parseJSON(payload)) : undefined
      if (p && p.user === topic.slice(2)) this.emitPresence(p)
      return
    }
    const e = decodeEntry(parseJSON(payload))
    if (!e) return
    if (e.seq === 0) {
      if (e.type === 'typing' && e.from !== this.user) {
        this.emit('typing', topic.startsWith('g/') ? topic : userInbox(e.from), e.from)
      }
      return
    }
    let sq = this.sequencers.get(topic)
    if (!sq && topic.startsWith('g/')) {
      // A group this client did not know it was in (the server subscribed
      // it, or the group list is stale): follow it from here.
      this.watchInbox(topic)
      sq = this.sequencers.get(topic)
      void this.refreshGroups()
    }
    sq?.push(e)
  }

  // --- Sending ---

  /** Queues a message to `u/{peer}` or `g/{group}`; it goes out now or on reconnect, retried until stored. */
  send(to: InboxTopic, body: MessageBody): OutgoingMessage {
    const m: OutgoingMessage = {
      cid: `c-${this.o.now().toString(36)}-${randomHex(8, this.o.random)}`,
      to,
      body,
      createdAt: this.o.now(),
      status: 'queued',
      attempts: 0,
    }
    this.queue.push(m)
    this.emit('outbox', { ...m })
    this.saveOutbox()
    void this.pump()
    return { ...m }
  }

  /** Sends a failed message again. */
  retry(cid: string): void {
    const m = this.queue.find((x) => x.cid === cid)
    if (!m || m.status !== 'failed') return
    Object.assign(m, { status: 'queued', attempts: 0, reason: undefined, code: undefined, notBefore: undefined })
    this.emit('outbox', { ...m })
    this.saveOutbox()
    void this.pump()
  }

  /** Drops a message that is not sending. */
  discard(cid: string): void {
    const i = this.queue.findIndex((x) => x.cid === cid && x.status !== 'sending')
    if (i < 0) return
    this.queue.splice(i, 1)
    this.saveOutbox()
  }

  private saveOutbox() {
    if (!this.session) return
    const keep = this.queue.filter((m) => m.status !== 'sent')
    void writeJSON(this.o.storage, outboxKey(this.session.user), keep)
  }

  /**
   * Publishes the outbox in order, one message at a time: a PUBACK 0x00
   * means stored; 0x80 (store unavailable) and 0x97 (rate limited) are
   * retried with backoff and the same cid (the server stores a repeated cid
   * once); any other code fails the message with its reason.
   */
  private async pump(): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.connected && this.transport) {
        const m = this.queue.find((x) => x.status === 'queued')
        if (!m) break
        const wait = (m.notBefore ?? 0) - this.o.now()
        if (wait > 0) {
          if (this.pumpTimer) clearTimeout(this.pumpTimer)
          this.pumpTimer = setTimeout(() => {
            this.pumpTimer = undefined
            void this.pump()
          }, wait)
          break
        }
        const t = this.transport
        m.status = 'sending'
        m.attempts++
        this.emit('outbox', { ...m })
        let code: number
        try {
          code = await withTimeout(
            t.publish(m.to, encodeMessage(m.cid, m.body), { qos: 1 }),
            this.o.publishTimeout,
          )
        } catch {
          // Lost the connection, or no PUBACK in time: publish again (same cid) later.
          if (m.status === 'sending') {
            m.status = 'queued'
            this.emit('outbox', { ...m })
          }
          if (t === this.transport) t.close(false)
          break
        }
        if (m.status !== 'sending') continue // the connection dropped meanwhile
        if (code < 0x80) {
          m.status = 'sent'
          m.reason = undefined
          this.queue.splice(this.queue.indexOf(m), 1)
          this.emit('outbox', { ...m })
        } else if (isRetryable(code)) {
          m.status = 'queued'
          m.code = code
          m.reason = reasonText(code)
          m.notBefore = this.o.now() + backoff(m.attempts - 1, this.o.retryDelay.min, this.o.retryDelay.max, this.o.random)
          this.emit('outbox', { ...m })
        } else {
          m.status = 'failed'
          m.code = code
          m.reason = reasonText(code)
          this.emit('outbox', { ...m })
        }
        this.saveOutbox()
      }
    } finally {
      this.pumping = false
    }
  }

  // --- Typing, read markers ---

  /** Tells the conversation's other side that the user is typing (at most every few seconds). */
  typing(conversation: InboxTopic): void {
    if (!this.connected || !this.transport) return
    const now = this.o.now()
    if (now - (this.lastTyping.get(conversation) ?? 0) < this.o.typingInterval * 1000) return
    this.lastTyping.set(conversation, now)
    void this.transport.publish(conversation, encodeTyping(), { qos: 0 }).catch(() => {})
  }

  /** Forgets the typing throttle of a conversation (after sending a message). */
  stoppedTyping(conversation: InboxTopic): void {
    this.lastTyping.delete(conversation)
  }

  /**
   * Marks an inbox read up to seq: `u/{me}` with the peer of a direct chat
   * (only that conversation), or `g/{group}`. The server keeps the cursor,
   * echoes it to the user's other devices and sends the senders read
   * receipts.
   */
  markRead(inbox: InboxTopic, seq: number, withPeer?: string): void {
    const key = withPeer ? `${inbox} ${withPeer}` : inbox
    if ((this.readsSent.get(key) ?? 0) >= seq) return
    this.readsSent.set(key, seq)
    this.pendingReads.set(key, seq)
    this.flushReads()
  }

  private flushReads() {
    if (!this.connected || !this.transport) return
    const t = this.transport
    for (const [key, seq] of this.pendingReads) {
      this.pendingReads.delete(key)
      const [inbox, peer] = key.split(' ')
      t.publish(inbox, encodeRead(inbox, seq, peer), { qos: 1 }).then(
        (code) => {
          if (isRetryable(code)) {
            this.pendingReads.set(key, Math.max(seq, this.pendingReads.get(key) ?? 0))
          } else if (code >= 0x80) {
            this.emit('error', new Error(`read marker on ${inbox} refused: ${reasonText(code)}`))
          }
        },
        () => {
          // Lost with the connection: sent again after reconnecting.
          if ((this.pendingReads.get(key) ?? 0) < seq) this.pendingReads.set(key, seq)
        },
      )
    }
  }

  // --- Presence ---

  /** Follows users' presence (subscribes to `p/{user}`; a user whose privacy hides them is `hidden`). */
  watchPresence(users: string[]): void {
    let added = false
    for (const u of users) {
      if (u && u !== this.user && !this.watchedPresence.has(u)) {
        this.watchedPresence.add(u)
        added = true
      }
    }
    if (added) void this.subscribePresence()
  }

  /**
   * Subscribes to the watched users' `p/{user}`, after reading their state
   * with GET /v1/presence (a persistent session's subscriptions are not
   * sent the retained states again). A refused subscription means that
   * user's privacy (or a block) hides them.
   */
  private async subscribePresence() {
    const t = this.transport
    if (!this.connected || !t) return
    const todo = [...this.watchedPresence].filter((u) => !this.subscribedPresence.has(u))
    if (todo.length === 0) return
    for (const u of todo) this.subscribedPresence.add(u)
    try {
      for (let i = 0; i < todo.length; i += 100) {
        for (const p of await this.api.presence(todo.slice(i, i + 100))) this.emitPresence(p)
      }
    } catch (err) {
      // The retained messages tell.
      this.emit('error', err as Error)
    }
    for (const u of todo) {
      if (t !== this.transport) return
      const [code] = await t.subscribe([presenceTopic(u)], 1).catch(() => [0x80])
      if (code >= 0x80) this.emitPresence({ user: u, status: 'hidden' })
    }
  }

  /**
   * Sets this device's status on `p/{me}`: away while the app is in the
   * background, online when it is back (a reconnecting device starts
   * online: away is said again on connecting).
   */
  setPresence(status: 'online' | 'away'): void {
    this.myStatus = status
    const t = this.transport
    if (!this.connected || !t || !this.user) return
    void t.publish(presenceTopic(this.user), encodePresenceStatus(status), { qos: 1 }).catch(() => {})
  }

  // --- Groups ---

  /**
   * Reads the user's groups (GET /v1/me/groups) and follows their inboxes.
   * Calls while a read is under way share one more read after it.
   */
  refreshGroups(): Promise<Group[] | undefined> {
    if (!this.session) return Promise.resolve(undefined)
    if (this.groupsRefresh) {
      this.groupsAgain = true
      return this.groupsRefresh
    }
    const run = async (): Promise<Group[] | undefined> => {
      let out: Group[] | undefined
      do {
        this.groupsAgain = false
        out = await this.readGroups()
      } while (this.groupsAgain && this.session)
      return out
    }
    const p = run().finally(() => {
      if (this.groupsRefresh === p) this.groupsRefresh = undefined
    })
    this.groupsRefresh = p
    return p
  }

  private async readGroups(): Promise<Group[] | undefined> {
    const user = this.user
    let groups: Group[]
    try {
      groups = await this.api.myGroups()
    } catch (err) {
      this.emit('error', err as Error)
      return undefined
    }
    if (this.user !== user) return undefined
    this._groups = groups
    const want = new Set(groups.map((g) => `g/${g.id}`))
    for (const inbox of want) this.watchInbox(inbox)
    for (const inbox of [...this.sequencers.keys()]) {
      if (inbox.startsWith('g/') && !want.has(inbox)) this.unwatchInbox(inbox)
    }
    this.emit('groups', groups)
    return groups
  }

  async createGroup(name: string, members: string[]): Promise<Group> {
    const g = await this.api.createGroup(name, members)
    this.watchInbox(`g/${g.id}`)
    void this.refreshGroups()
    return g
  }

  async leaveGroup(group: string): Promise<void> {
    await this.api.removeMember(group, this.user!)
    this.unwatchInbox(`g/${group}`)
    void this.refreshGroups()
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timeout')), ms)
    p.then(
      (v) => {
        clearTimeout(t)
        resolve(v)
      },
      (e) => {
        clearTimeout(t)
        reject(e)
      },
    )
  })
}
