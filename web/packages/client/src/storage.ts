/**
 * Where the SDK keeps what must survive a restart: the session (user and
 * token), the device's client id, the outbox, and (ChatStore) the groups the
 * user was removed from. Read positions are the server's, not kept here.
 * Both the browser's localStorage and React Native's AsyncStorage fit as
 * they are.
 */
export interface KeyValueStorage {
  getItem(key: string): string | null | Promise<string | null>
  setItem(key: string, value: string): void | Promise<void>
  removeItem(key: string): void | Promise<void>
}

/** A KeyValueStorage in memory, for tests and throwaway sessions. */
export function memoryStorage(initial: Record<string, string> = {}): KeyValueStorage & { data: Map<string, string> } {
  const data = new Map(Object.entries(initial))
  return {
    data,
    getItem: (k) => data.get(k) ?? null,
    setItem: (k, v) => {
      data.set(k, v)
    },
    removeItem: (k) => {
      data.delete(k)
    },
  }
}

export async function readJSON<T>(s: KeyValueStorage, key: string): Promise<T | undefined> {
  const raw = await s.getItem(key)
  if (raw == null) return undefined
  try {
    return JSON.parse(raw) as T
  } catch {
    return undefined
  }
}

export async function writeJSON(s: KeyValueStorage, key: string, v: unknown): Promise<void> {
  await s.setItem(key, JSON.stringify(v))
}
