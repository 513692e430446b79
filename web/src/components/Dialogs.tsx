import { useEffect, useRef, useState } from 'react'
import { ApiError, validId } from '@parley/client'
import { useChat, useStore } from '../hooks'
import { Avatar } from './Avatar'
import { CloseIcon } from './Icons'

/** A modal dialog: focus stays inside, Escape closes it. */
function Modal({ title, onClose, children }: { title: string; onClose(): void; children: React.ReactNode }) {
  const ref = useRef<HTMLDialogElement>(null)
  useEffect(() => {
    const d = ref.current!
    if (!d.open) d.showModal()
    return () => d.close()
  }, [])
  return (
    <dialog
      ref={ref}
      className="modal"
      aria-labelledby="modal-title"
      onCancel={(e) => {
        e.preventDefault()
        onClose()
      }}
      onClick={(e) => e.target === ref.current && onClose()}
    >
      <div className="modal-body">
        <header>
          <h2 id="modal-title">{title}</h2>
          <button type="button" className="icon" onClick={onClose} aria-label="Close">
            <CloseIcon />
          </button>
        </header>
        {children}
      </div>
    </dialog>
  )
}

function cleanIds(s: string): string[] {
  return [...new Set(s.toLowerCase().split(/[\s,;]+/).map((x) => x.replace(/^@/, '')).filter(Boolean))]
}

/** Checks that users exist; returns the error to show, or ''. */
async function checkUsers(store: ReturnType<typeof useStore>, ids: string[]): Promise<string> {
  for (const id of ids) {
    if (!validId(id)) return `“${id}” is not a valid user id.`
    try {
      await store.client.api.user(id)
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return `There is no user “${id}”.`
      return (err as Error).message
    }
  }
  return ''
}

export function NewChatDialog({ onClose, onOpen }: { onClose(): void; onOpen(conv: string): void }) {
  const store = useStore()
  const [id, setId] = useState('')
  const [error, setError] = useState('')
  const [busy, setBusy] = useState(false)
  const submit = async (e: React.FormEvent) => {
    e.preventDefault()
    const [user] = cleanIds(id)
    if (!user) return
    setBusy(true)
    const err = await checkUsers(store, [user])
    setBusy(false)
    if (err) return setError(err)
    onOpen(store.startChat(user))
  }
  return (
    <Modal title="New chat" onClose={onClose}>
      <form onSubmit={submit} className="stack">
        <label>
          User id
          <input autoFocus name="peer" autoCapitalize="none" spellCheck={false} placeholder="bob" value={id} onChange={(e) => (setId(e.target.value), setError(''))} />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || !id.trim()}>
            Chat
          </button>
        </div>
      </form>
    </Modal>
  )
}

export function NewGroupDialog({ onClose, onOpen }: { onClose(): void; onOpen(conv: string): void }) {
  const store = useStore()
  const [name, setName] = useState('')
  const [members, setMembers] = useState('')
  const [error, setError] = useState('')
  const [busy, setBusy] = useState(false)
  const submit = async (e: React.FormEvent) => {
    e.preventDefault()
    const ids = cleanIds(members).filter((u) => u !== store.client.user)
    if (!name.trim()) return setError('Give the group a name.')
    if (ids.length === 0) return setError('Add at least one member.')
    setBusy(true)
    try {
      const err = await checkUsers(store, ids)
      if (err) return setError(err)
      const g = await store.client.createGroup(name.trim(), ids)
      onOpen(`g/${g.id}`)
    } catch (err) {
      setError((err as Error).message)
    } finally {
      setBusy(false)
    }
  }
  return (
    <Modal title="New group" onClose={onClose}>
      <form onSubmit={submit} className="stack">
        <label>
          Group name
          <input autoFocus name="group-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="Weekend plans" maxLength={100} />
        </label>
        <label>
          Members (user ids, separated by spaces or commas)
          <input name="members" autoCapitalize="none" spellCheck={false} value={members} onChange={(e) => setMembers(e.target.value)} placeholder="bob, carol" />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy}>
            Create group
          </button>
        </div>
      </form>
    </Modal>
  )
}

export function GroupInfoDialog({ group, onClose, onLeft }: { group: string; onClose(): void; onLeft(): void }) {
  const store = useStore()
  const state = useChat()
  const g = state.groups[group]
  const me = state.user!
  const [name, setName] = useState(g?.name ?? '')
  const [add, setAdd] = useState('')
  const [error, setError] = useState('')
  const [busy, setBusy] = useState(false)
  if (!g) {
    return (
      <Modal title="Group" onClose={onClose}>
        <p>You are no longer a member of this group.</p>
      </Modal>
    )
  }
  const act = async (f: () => Promise<unknown>) => {
    setError('')
    setBusy(true)
    try {
      await f()
      await store.client.refreshGroups()
    } catch (err) {
      setError((err as Error).message)
    } finally {
      setBusy(false)
    }
  }
  const owner = g.owner === me
  return (
    <Modal title="Group info" onClose={onClose}>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault()
          if (name.trim() && name.trim() !== g.name) void act(() => store.client.api.renameGroup(group, name.trim()))
        }}
      >
        <label>
          Name
          <span className="row-input">
            <input value={name} onChange={(e) => setName(e.target.value)} maxLength={100} />
            <button type="submit" disabled={busy || !name.trim() || name.trim() === g.name}>
              Rename
            </button>
          </span>
        </label>
      </form>
      <h3>{g.members.length} members</h3>
      <ul className="members">
        {g.members.map((u) => (
          <li key={u}>
            <Avatar id={u} name={state.names[u] ?? u} size={32} presence={state.presence[u]?.status} />
            <span className="grow">
              {u === me ? 'You' : (state.names[u] ?? u)} <span className="muted">@{u}</span>
              {u === g.owner && <span className="badge">owner</span>}
            </span>
            {owner && u !== me && (
              <button type="button" className="link danger" disabled={busy} onClick={() => void act(() => store.client.api.removeMember(group, u))}>
                Remove
              </button>
            )}
          </li>
        ))}
      </ul>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault()
          const ids = cleanIds(add)
          if (ids.length === 0) return
          void act(async () => {
            const err = await checkUsers(store, ids)
            if (err) throw new Error(err)
            for (const u of ids) await store.client.api.addMember(group, u)
            setAdd('')
          })
        }}
      >
        <label>
          Add members
          <span className="row-input">
            <input value={add} onChange={(e) => setAdd(e.target.value)} placeholder="dave" autoCapitalize="none" spellCheck={false} />
            <button type="submit" disabled={busy || !add.trim()}>
              Add
            </button>
          </span>
        </label>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        <button
          type="button"
          className="danger"
          disabled={busy}
          onClick={() =>
            void act(async () => {
              await store.client.leaveGroup(group)
              onLeft()
            })
          }
        >
          Leave group
        </button>
      </div>
    </Modal>
  )
}
