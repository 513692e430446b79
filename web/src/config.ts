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
