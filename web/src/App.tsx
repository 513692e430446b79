import { useEffect, useState } from 'react'
import { Auth } from './components/Auth'
import { Banner } from './components/Banner'
import { Chat } from './components/Chat'
import { GroupInfoDialog, NewChatDialog, NewGroupDialog } from './components/Dialogs'
import { Sidebar } from './components/Sidebar'
import { useChat, useRoute, useStore } from './hooks'

export function App() {
  const state = useChat()
  const store = useStore()
  const [conv, go] = useRoute()
  const [dialog, setDialog] = useState<'chat' | 'group' | 'info' | undefined>()

  useEffect(() => {
    store.setOpen(state.user ? conv : undefined)
  }, [conv, state.user, store])

  // A direct chat opened from a link shows even before its first message.
  useEffect(() => {
    if (state.user && conv?.startsWith('u/')) store.startChat(conv.slice(2))
  }, [conv, state.user, store])

  useEffect(() => {
    const unread = state.conversations.reduce((n, c) => n + c.unread, 0)
    document.title = unread ? `(${unread}) Parley` : 'Parley'
  }, [state.conversations])

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.altKey && (e.key === 'n' || e.key === 'N')) {
        e.preventDefault()
        setDialog('chat')
      } else if (e.key === 'Escape' && !dialog && conv && !(e.target as HTMLElement)?.closest?.('dialog')) {
        go(undefined)
      }
    }
    window.addEventListener('keydown', onKey)
    return () => window.removeEventListener('keydown', onKey)
  }, [dialog, conv, go])

  if (!state.user) return <Auth />
  const open = (key: string) => {
    setDialog(undefined)
    go(key)
  }
  return (
    <div className="app" data-view={conv ? 'chat' : 'list'}>
      <Banner />
      <div className="panes">
        <Sidebar open={conv} onOpen={open} onNewChat={() => setDialog('chat')} onNewGroup={() => setDialog('group')} />
        {conv ? (
          <Chat conv={conv} onBack={() => go(undefined)} onInfo={() => setDialog('info')} />
        ) : (
          <section className="chat placeholder" aria-hidden="true">
            <div>
              <img src="/favicon.svg" alt="" width={72} height={72} />
              <p>Select a conversation, or start a new one.</p>
            </div>
          </section>
        )}
      </div>
      {dialog === 'chat' && <NewChatDialog onClose={() => setDialog(undefined)} onOpen={open} />}
      {dialog === 'group' && <NewGroupDialog onClose={() => setDialog(undefined)} onOpen={open} />}
      {dialog === 'info' && conv?.startsWith('g/') && (
        <GroupInfoDialog
          group={conv.slice(2)}
          onClose={() => setDialog(undefined)}
          onLeft={() => {
            setDialog(undefined)
            go(undefined)
          }}
        />
      )}
    </div>
  )
}
