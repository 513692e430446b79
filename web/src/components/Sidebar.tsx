import { useMemo, useRef, useState } from 'react'
import type { Conversation } from '@parley/client'
import { listTime } from '../format'
import { useChat, useNow, useStore } from '../hooks'
import { Avatar } from './Avatar'
import { ComposeIcon, GroupIcon, LogoutIcon, SearchIcon, Ticks } from './Icons'

export function Sidebar({ open, onOpen, onNewChat, onNewGroup }: { open?: string; onOpen(key: string): void; onNewChat(): void; onNewGroup(): void }) {
  const state = useChat()
  const store = useStore()
  const now = useNow()
  const [q, setQ] = useState('')
  const list = useRef<HTMLUListElement>(null)
  const me = state.user ?? ''
  const myName = state.names[me] ?? me

  const shown = useMemo(() => {
    const s = q.trim().toLowerCase()
    if (!s) return state.conversations
    return state.conversations.filter((c) => c.title.toLowerCase().includes(s) || (c.peer ?? c.group ?? '').includes(s))
  }, [q, state.conversations])

  // Arrow keys move between conversations.
  const onKey = (e: React.KeyboardEvent) => {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return
    const items = [...(list.current?.querySelectorAll<HTMLButtonElement>('button.conv') ?? [])]
    const i = items.indexOf(document.activeElement as HTMLButtonElement)
    const next = items[e.key === 'ArrowDown' ? Math.min(items.length - 1, i + 1) : Math.max(0, i - 1)]
    if (next) {
      e.preventDefault()
      next.focus()
    }
  }

  return (
    <aside className="sidebar" aria-label="Conversations">
      <header className="side-head">
        <Avatar id={me} name={myName} size={36} />
        <div className="me">
          <strong>{myName}</strong>
          <span className="muted">@{me}</span>
        </div>
        <button type="button" className="icon" onClick={onNewChat} title="New chat (Alt+N)" aria-label="New chat">
          <ComposeIcon />
        </button>
        <button type="button" className="icon" onClick={onNewGroup} title="New group" aria-label="New group">
          <GroupIcon />
        </button>
        <button type="button" className="icon" onClick={() => void store.client.signOut()} title="Sign out" aria-label="Sign out">
          <LogoutIcon />
        </button>
      </header>
      <div className="search">
        <SearchIcon size={16} />
        <input type="search" placeholder="Search" aria-label="Search conversations" value={q} onChange={(e) => setQ(e.target.value)} onKeyDown={(e) => e.key === 'ArrowDown' && onKey(e)} />
      </div>
      <ul className="convs" ref={list} onKeyDown={onKey}>
        {shown.map((c) => (
          <li key={c.key}>
            <Item c={c} active={c.key === open} now={now} onOpen={onOpen} />
          </li>
        ))}
        {shown.length === 0 && (
          <li className="empty">
            {q ? (
              'No conversation matches.'
            ) : state.ready ? (
              <>
                <p>No conversations yet.</p>
                <button type="button" className="primary" onClick={onNewChat}>
                  Start a chat
                </button>
              </>
            ) : (
              'Loading…'
            )}
          </li>
        )}
      </ul>
    </aside>
  )
}

function Item({ c, active, now, onOpen }: { c: Conversation; active: boolean; now: number; onOpen(key: string): void }) {
  const state = useChat()
  const typing = state.typing[c.key]
  const presence = c.peer ? state.presence[c.peer]?.status : undefined
  const last = c.last
  let preview: React.ReactNode = <span className="muted">No messages yet</span>
  if (typing?.length) {
    preview = <span className="typing-text">{c.kind === 'group' ? `${state.names[typing[0]] ?? typing[0]} is typing…` : 'typing…'}</span>
  } else if (last) {
    const who = last.mine ? 'You: ' : c.kind === 'group' && last.kind === 'msg' ? `${state.names[last.from] ?? last.from}: ` : ''
    preview = (
      <>
        {last.mine && last.kind === 'msg' && <Ticks status={last.status} />}
        <span className="preview-text">
          {who}
          {last.text}
        </span>
      </>
    )
  }
  return (
    <button type="button" className={`conv${active ? ' active' : ''}`} onClick={() => onOpen(c.key)} data-conv={c.key} aria-current={active ? 'true' : undefined}>
      <Avatar id={c.key} name={c.title} presence={presence} group={c.kind === 'group'} />
      <span className="conv-main">
        <span className="conv-top">
          <span className="conv-title">{c.title}</span>
          {last && <time className="conv-time">{listTime(last.ts, now)}</time>}
        </span>
        <span className="conv-bottom">
          <span className="preview">{preview}</span>
          {c.unread > 0 && (
            <span className="unread" data-testid="unread" aria-label={`${c.unread} unread`}>
              {c.unread > 99 ? '99+' : c.unread}
            </span>
          )}
        </span>
      </span>
    </button>
  )
}
