import { Fragment, memo, useEffect, useLayoutEffect, useRef, useState } from 'react'
import type { ChatMessage, Conversation } from '@parley/client'
import { clock, dayLabel, lastSeen, otherDay } from '../format'
import { useChat, useNow, useStore } from '../hooks'
import { Avatar } from './Avatar'
import { BackIcon, DownIcon, InfoIcon, SendIcon, Ticks } from './Icons'

const drafts = new Map<string, string>()

export function Chat({ conv, onBack, onInfo }: { conv: string; onBack(): void; onInfo(): void }) {
  const state = useChat()
  const c: Conversation =
    state.conversations.find((x) => x.key === conv) ??
    ({
      key: conv,
      kind: conv.startsWith('g/') ? 'group' : 'direct',
      peer: conv.startsWith('u/') ? conv.slice(2) : undefined,
      group: conv.startsWith('g/') ? conv.slice(2) : undefined,
      title: conv.startsWith('g/') ? 'Group' : conv.slice(2),
      unread: 0,
      updatedAt: 0,
    } as Conversation)
  const presence = c.peer ? state.presence[c.peer] : undefined
  return (
    <section className="chat" aria-label={`Conversation with ${c.title}`}>
      <header className="chat-head">
        <button type="button" className="icon back" onClick={onBack} aria-label="Back to conversations">
          <BackIcon />
        </button>
        <Avatar id={c.key} name={c.title} size={38} presence={presence?.status} group={c.kind === 'group'} />
        <div className="chat-title">
          <strong>{c.title}</strong>
          <Subtitle c={c} />
        </div>
        {c.kind === 'group' && !c.former && (
          <button type="button" className="icon" onClick={onInfo} aria-label="Group info" title="Group info">
            <InfoIcon />
          </button>
        )}
      </header>
      <Messages key={conv} c={c} />
      {c.former ? (
        <p className="composer closed" role="status" data-testid="composer-closed">
          {c.former === 'left' ? 'You left this group' : 'You are no longer a member of this group'}
        </p>
      ) : (
        <Composer key={`composer ${conv}`} conv={conv} />
      )}
    </section>
  )
}

function Subtitle({ c }: { c: Conversation }) {
  const state = useChat()
  const now = useNow(20_000)
  const typing = state.typing[c.key]
  const name = (u: string) => (u === state.user ? 'You' : (state.names[u] ?? u))
  if (typing?.length) {
    const who = c.kind === 'group' ? `${typing.map(name).join(', ')} ${typing.length > 1 ? 'are' : 'is'} typing…` : 'typing…'
    return (
      <span className="subtitle typing-text" data-testid="typing">
        {who}
      </span>
    )
  }
  if (c.kind === 'group') {
    const g = state.groups[c.group!]
    if (c.former) return <span className="subtitle">{c.former === 'left' ? 'You left' : 'You were removed'}</span>
    return <span className="subtitle">{g ? `${g.members.length} members: ${g.members.map(name).join(', ')}` : 'group'}</span>
  }
  const p = c.peer ? state.presence[c.peer] : undefined
  if (p?.status === 'online') {
    return (
      <span className="subtitle online" data-testid="presence">
        online
      </span>
    )
  }
  if (p?.status === 'away') {
    return (
      <span className="subtitle" data-testid="presence">
        away
      </span>
    )
  }
  if (p?.status === 'offline') {
    return (
      <span className="subtitle" data-testid="presence">
        {lastSeen(p.last_seen, now)}
      </span>
    )
  }
  return <span className="subtitle">@{c.peer}</span>
}

function Messages({ c }: { c: Conversation }) {
  const state = useChat()
  const store = useStore()
  const list = state.messages[c.key] ?? []
  const hist = state.history[c.key]
  const box = useRef<HTMLDivElement>(null)
  const [atBottom, setAtBottom] = useState(true)
  const snap = useRef({ height: 0, top: 0, first: '', last: '', bottom: true })

  // Read the scroll position before React changes the DOM.
  if (box.current) {
    const el = box.current
    snap.current.height = el.scrollHeight
    snap.current.top = el.scrollTop
    snap.current.bottom = el.scrollHeight - el.scrollTop - el.clientHeight < 80
  }

  useLayoutEffect(() => {
    const el = box.current
    if (!el) return
    const first = list[0]?.key ?? ''
    const last = list[list.length - 1]?.key ?? ''
    const s = snap.current
    if (s.first === '' && s.last === '') {
      el.scrollTop = el.scrollHeight // opened: start at the newest
    } else if (first !== s.first && last === s.last) {
      el.scrollTop = el.scrollHeight - s.height + s.top // older loaded above: stay put
    } else if (last !== s.last && (s.bottom || list[list.length - 1]?.mine)) {
      el.scrollTop = el.scrollHeight
    }
    s.first = first
    s.last = last
  }, [list])

  const loadMore = () => {
    const el = box.current
    if (!el || !hist?.more || hist.loading) return
    if (el.scrollTop < 300) void store.loadOlder(c.key)
  }
  // Fill the screen: load older messages while there is no scroll bar.
  useEffect(() => {
    const el = box.current
    if (el && hist?.more && !hist.loading && el.scrollHeight <= el.clientHeight + 300) void store.loadOlder(c.key)
  }, [hist?.more, hist?.loading, list.length, c.key, store])

  const onScroll = () => {
    const el = box.current!
    setAtBottom(el.scrollHeight - el.scrollTop - el.clientHeight < 80)
    loadMore()
  }

  const name = (u: string) => (u === state.user ? 'You' : (state.names[u] ?? u))
  return (
    <div className="messages-wrap">
      <div className="messages" ref={box} onScroll={onScroll} role="log" aria-live="polite" aria-relevant="additions" tabIndex={0} data-testid="messages">
        {hist?.loading && <div className="loading-older">Loading earlier messages…</div>}
        {hist && !hist.more && list.length > 0 && <div className="start">This is the beginning of your conversation{c.kind === 'direct' ? ` with ${c.title}` : ''}.</div>}
        {list.length === 0 && !hist?.loading && <div className="start">No messages here yet. Say hello!</div>}
        {list.map((m, i) => {
          const prev = list[i - 1]
          const newDay = !prev || otherDay(prev.ts, m.ts)
          const cont = !!prev && !newDay && prev.from === m.from && prev.kind === m.kind && m.ts - prev.ts < 5 * 60_000
          return (
            <Fragment key={m.key}>
              {newDay && (
                <div className="day" role="separator">
                  <span>{dayLabel(m.ts)}</span>
                </div>
              )}
              {m.kind === 'system' ? (
                <div className="system">{m.text}</div>
              ) : (
                <Bubble m={m} cont={cont} showName={c.kind === 'group' && !m.mine && !cont} name={name(m.from)} />
              )}
            </Fragment>
          )
        })}
      </div>
      {!atBottom && (
        <button
          type="button"
          className="to-bottom"
          aria-label="Scroll to the newest message"
          onClick={() => box.current?.scrollTo({ top: box.current.scrollHeight, behavior: 'smooth' })}
        >
          <DownIcon />
          {c.unread > 0 && <span className="unread">{c.unread}</span>}
        </button>
      )}
    </div>
  )
}

// Messages are immutable: a bubble re-renders only when its message changed.
const Bubble = memo(function Bubble({ m, cont, showName, name }: { m: ChatMessage; cont: boolean; showName: boolean; name: string }) {
  const store = useStore()
  return (
    <div className={`row ${m.mine ? 'mine' : 'theirs'}${cont ? ' cont' : ''}`}>
      <div className={`bubble${m.status === 'failed' ? ' failed' : ''}`} data-testid="bubble" data-status={m.status ?? ''} data-key={m.key}>
        {showName && <div className="sender">{name}</div>}
        <span className="text">{m.text}</span>
        <span className="meta">
          <time dateTime={new Date(m.ts).toISOString()}>{clock(m.ts)}</time>
          {m.mine && <Ticks status={m.status} />}
        </span>
      </div>
      {m.status === 'failed' && (
        <div className="failed-note" role="alert">
          Not sent: {m.reason}.{' '}
          <button type="button" className="link" onClick={() => store.retry(m)}>
            Retry
          </button>{' '}
          ·{' '}
          <button type="button" className="link" onClick={() => store.discard(m)}>
            Delete
          </button>
        </div>
      )}
    </div>
  )
})

function Composer({ conv }: { conv: string }) {
  const store = useStore()
  const [text, setText] = useState(drafts.get(conv) ?? '')
  const ta = useRef<HTMLTextAreaElement>(null)

  useEffect(() => {
    // Focus on desktop; on a phone the keyboard would cover the messages.
    if (window.matchMedia('(min-width: 760px)').matches) ta.current?.focus()
  }, [conv])

  useLayoutEffect(() => {
    const el = ta.current
    if (!el) return
    el.style.height = 'auto'
    el.style.height = `${Math.min(el.scrollHeight, 160)}px`
  }, [text])

  const send = () => {
    if (!text.trim()) return
    store.send(conv, text)
    setText('')
    drafts.delete(conv)
    ta.current?.focus()
  }
  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault()
        send()
      }}
    >
      <textarea
        ref={ta}
        rows={1}
        placeholder="Message"
        aria-label="Message"
        value={text}
        maxLength={20000}
        onChange={(e) => {
          setText(e.target.value)
          drafts.set(conv, e.target.value)
          if (e.target.value.trim()) store.client.typing(conv)
        }}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault()
            send()
          }
        }}
      />
      <button type="submit" className="send" aria-label="Send" disabled={!text.trim()}>
        <SendIcon />
      </button>
    </form>
  )
}
