/**
 * `@parley/client/web`: what a browser app adds to the core — storage in
 * localStorage, a device slot per tab, the WebSocket URL of the page that
 * Parley serves, and the browser's network events. Type-checked with the
 * DOM library (tsconfig.web.json); the core never imports it.
 */
import type { ParleyClient } from './client.js'
import { memoryStorage, type KeyValueStorage } from './storage.js'

/**
 * Where the app finds MQTT over WebSocket. parley fills in
 * <meta name="parley-ws" content="…"> when it serves index.html: a port
 * ("8083"), a port and path (":8083/mqtt"), or a full ws(s):// URL. The host
 * is the one the page was loaded from.
 */
export function wsUrlFrom(meta: string | null | undefined, loc: { protocol: string; hostname: string }): string {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws'
  const host = loc.hostname.includes(':') ? `[${loc.hostname}]` : loc.hostname
  const m = (meta ?? '').trim()
  if (/^wss?:\/\//.test(m)) return m
  const p = /^:?(\d{1,5})(\/.*)?$/.exec(m)
  if (p) return `${scheme}://${host}:${p[1]}${p[2] ?? '/mqtt'}`
  return `${scheme}://${host}:8083/mqtt`
}

/** The WebSocket URL of the page Parley served (its parley-ws meta tag), for ClientOptions.mqttUrl. */
export function pageWsUrl(): string {
  return wsUrlFrom(document.querySelector('meta[name="parley-ws"]')?.getAttribute('content'), location)
}

/** localStorage, or storage in memory where the browser refuses it (private modes): the session then lasts as long as the tab. */
export function browserStorage(): KeyValueStorage {
  try {
    localStorage.setItem('parley.probe', '1')
    localStorage.removeItem('parley.probe')
    return localStorage
  } catch {
    return memoryStorage()
  }
}

/**
 * Tabs of an app share localStorage, so they would share the device's MQTT
 * client id and take the session from each other forever. Each tab holds a
 * numbered Web Lock for as long as it lives and uses that slot
 * (ClientOptions.deviceSlot): the first tab is slot 0, a second one slot 1,
 * and so on, each id stable.
 */
export async function claimDeviceSlot(): Promise<number> {
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

/** Tells the client when the browser goes offline and online (client.networkChanged). Returns the function that stops. */
export function watchNetwork(client: ParleyClient): () => void {
  const online = () => client.networkChanged(true)
  const offline = () => client.networkChanged(false)
  window.addEventListener('online', online)
  window.addEventListener('offline', offline)
  return () => {
    window.removeEventListener('online', online)
    window.removeEventListener('offline', offline)
  }
}
