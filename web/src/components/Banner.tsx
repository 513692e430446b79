import { useEffect, useRef, useState } from 'react'
import { useChat, useStore } from '../hooks'

/**
 * The connection banner: "Connecting…" on the way up, "Offline" (with a
 * retry) when the connection is lost, "Back online" for a moment after it
 * returns. Nothing while all is well.
 */
export function Banner() {
  const { connection, connectionDetail } = useChat()
  const store = useStore()
  const wasDown = useRef(false)
  const [back, setBack] = useState(false)
  const [slow, setSlow] = useState(false)

  useEffect(() => {
    if (connection === 'offline') wasDown.current = true
    if (connection === 'online' && wasDown.current) {
      wasDown.current = false
      setBack(true)
      const t = setTimeout(() => setBack(false), 2500)
      return () => clearTimeout(t)
    }
    if (connection === 'connecting') {
      // Only say "connecting" when it takes a moment.
      const t = setTimeout(() => setSlow(true), 600)
      return () => {
        clearTimeout(t)
        setSlow(false)
      }
    }
  }, [connection])

  let text = ''
  let kind = ''
  if (connection === 'offline' || (connection === 'connecting' && wasDown.current)) {
    kind = 'offline'
    text = connection === 'offline' ? 'Offline. Messages you send will go out when the connection is back.' : 'Reconnecting…'
  } else if (connection === 'connecting' && slow) {
    kind = 'connecting'
    text = 'Connecting…'
  } else if (connection === 'unauthorized') {
    kind = 'offline'
    text = 'Your session has expired. Sign in again.'
  } else if (back) {
    kind = 'back'
    text = 'Back online'
  }
  if (!kind) return null
  return (
    <div className={`banner ${kind}`} role="status" aria-live="polite" data-testid="banner" data-state={kind} title={connectionDetail}>
      <span>{text}</span>
      {connection === 'offline' && (
        <button type="button" className="link" onClick={() => store.client.connect()}>
          Retry now
        </button>
      )}
      {connection === 'unauthorized' && (
        <button type="button" className="link" onClick={() => void store.client.signOut()}>
          Sign in
        </button>
      )}
    </div>
  )
}
