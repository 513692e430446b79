import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { ChatStore, createClient } from '@parley/client'
import { browserStorage, claimDeviceSlot, pageWsUrl, watchNetwork } from '@parley/client/web'
import { App } from './App'
import { ChatContext } from './hooks'
import './styles.css'

async function start() {
  const storage = browserStorage()
  const deviceSlot = await claimDeviceSlot()
  const client = createClient({ apiUrl: '', mqttUrl: pageWsUrl(), storage, deviceSlot })
  const store = new ChatStore(client, storage)

  watchNetwork(client)
  // In the background for a minute: "away".
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
