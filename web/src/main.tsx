import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { ChatStore, createClient, type KeyValueStorage } from '../sdk'
import { App } from './App'
import { wsUrlFrom } from './config'
import { ChatContext } from './hooks'
import './styles.css'

function browserStorage(): KeyValueStorage {
  try {
    localStorage.setItem('parley.probe', '1')
    localStorage.removeItem('parley.probe')
    return localStorage
  } catch {
    // Private mode without storage: the session lasts as long as the tab.
    const m = new Map<string, string>()
    return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, v), removeItem: (k) => void m.delete(k) }
  }
}

/**
 * Tabs of the app share localStorage, so they would share the device's MQTT
 * client id and take the session from each other forever. Each tab holds a
 * numbered Web Lock for as long as it lives and uses that slot's id: the
 * first tab is slot 0, a second one slot 1, and so on, each id stable.
 */
async function claimSlot(): Promise<number> {
  const locks = (navigator as Navigator & { locks?: LockManager }).locks
  if (!locks) return 0
  for (let i = 0; i < 16; i++) {
    const got = await new Promise<boolean>((resolve) => {
      void locks.request(`parley-tab-${i}`, { ifAvailable: true }, (lock) => {
        resolve(!!lock)
        return lock ? new Promise<void>(() => {}) : undefined
      })
    })
    if (got) return i
  }
  return 16 + Math.floor(Math.random() * 1000)
}

async function start() {
  const storage = browserStorage()
  const deviceSlot = await claimSlot()
  const wsUrl = wsUrlFrom(document.querySelector('meta[name="parley-ws"]')?.getAttribute('content'), location)
  const client = createClient({ apiUrl: '', wsUrl, storage, deviceSlot })
  const store = new ChatStore(client, storage)

  window.addEventListener('online', () => client.networkChanged(true))
  window.addEventListener('offline', () => client.networkChanged(false))
  // In the background for a minute: "away" (where the server has presence).
  let awayTimer: ReturnType<typeof setTimeout> | undefined
  let away = false
  document.addEventListener('visibilitychange', () => {
    const visible = document.visibilityState === 'visible'
    store.setVisible(visible)
    clearTimeout(awayTimer)
    if (visible && away) {
      away = false
      client.setPresence('online')
    } else if (!visible) {
      awayTimer = setTimeout(() => {
        away = true
        client.setPresence('away')
      }, 60_000)
    }
  })
  store.setVisible(document.visibilityState === 'visible')

  // For the browser tests and for debugging from the console, when the
  // server says so (web.debug): otherwise an injected script finds no
  // handle on the signed-in client.
  if (document.querySelector('meta[name="parley-debug"]')?.getAttribute('content') === '1') {
    ;(window as unknown as { parley: unknown }).parley = { client, store }
  }

  void client.restore().finally(() => {
    createRoot(document.getElementById('root')!).render(
      <StrictMode>
        <ChatContext.Provider value={store}>
          <App />
        </ChatContext.Provider>
      </StrictMode>,
    )
  })
}

void start()
