import { createContext, useContext, useEffect, useState, useSyncExternalStore } from 'react'
import type { ChatState, ChatStore } from '@parley/client'

export const ChatContext = createContext<ChatStore | null>(null)

export function useStore(): ChatStore {
  const s = useContext(ChatContext)
  if (!s) throw new Error('no ChatStore')
  return s
}

export function useChat(): ChatState {
  const s = useStore()
  return useSyncExternalStore(s.subscribe, s.getState)
}

/** The current time, updated every interval ms (for "last seen 5 min ago"). */
export function useNow(interval = 30_000): number {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), interval)
    return () => clearInterval(t)
  }, [interval])
  return now
}

/** The app's route: the open conversation, kept in the URL (/c/u/bob, /c/g/team). */
export function useRoute(): [string | undefined, (conv: string | undefined) => void] {
  const read = () => {
    const m = /^\/c\/([ug]\/[a-z0-9][a-z0-9_.-]{0,63})$/.exec(location.pathname)
    return m ? m[1] : undefined
  }
  const [conv, setConv] = useState<string | undefined>(read)
  useEffect(() => {
    const on = () => setConv(read())
    window.addEventListener('popstate', on)
    return () => window.removeEventListener('popstate', on)
  }, [])
  const go = (next: string | undefined) => {
    const path = next ? `/c/${next}` : '/'
    if (location.pathname !== path) {
      if (next && conv && location.pathname !== '/') history.replaceState(null, '', path)
      else history.pushState(null, '', path)
    }
    setConv(next)
  }
  return [conv, go]
}
