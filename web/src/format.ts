// Formatting for people: times, days, last seen, avatars.

const DAY = 24 * 3600 * 1000

function startOfDay(ts: number): number {
  const d = new Date(ts)
  d.setHours(0, 0, 0, 0)
  return d.getTime()
}

/** "14:05" */
export function clock(ts: number): string {
  return new Date(ts).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
}

/** A day separator: "Today", "Yesterday", "Monday", "12 March", "12 March 2025". */
export function dayLabel(ts: number, now = Date.now()): string {
  const diff = Math.round((startOfDay(now) - startOfDay(ts)) / DAY)
  if (diff === 0) return 'Today'
  if (diff === 1) return 'Yesterday'
  const d = new Date(ts)
  if (diff > 1 && diff < 7) return d.toLocaleDateString(undefined, { weekday: 'long' })
  const sameYear = d.getFullYear() === new Date(now).getFullYear()
  return d.toLocaleDateString(undefined, sameYear ? { day: 'numeric', month: 'long' } : { day: 'numeric', month: 'long', year: 'numeric' })
}

/** Whether two times fall on different local days. */
export function otherDay(a: number, b: number): boolean {
  return startOfDay(a) !== startOfDay(b)
}

/** The time in a conversation list: "14:05" today, "Yesterday", "Mon", "12/03/25". */
export function listTime(ts: number, now = Date.now()): string {
  const diff = Math.round((startOfDay(now) - startOfDay(ts)) / DAY)
  if (diff === 0) return clock(ts)
  if (diff === 1) return 'Yesterday'
  if (diff > 1 && diff < 7) return new Date(ts).toLocaleDateString(undefined, { weekday: 'short' })
  return new Date(ts).toLocaleDateString(undefined, { day: '2-digit', month: '2-digit', year: '2-digit' })
}

/** "last seen just now", "last seen 5 min ago", "last seen today at 14:05", "last seen yesterday at 9:12", "last seen 12 March". */
export function lastSeen(ts: number | undefined, now = Date.now()): string {
  if (!ts) return 'offline'
  const ago = now - ts
  if (ago < 60_000) return 'last seen just now'
  if (ago < 3600_000) return `last seen ${Math.floor(ago / 60_000)} min ago`
  const diff = Math.round((startOfDay(now) - startOfDay(ts)) / DAY)
  if (diff === 0) return `last seen today at ${clock(ts)}`
  if (diff === 1) return `last seen yesterday at ${clock(ts)}`
  return `last seen ${dayLabel(ts, now)}`
}

/** Up to two letters for an avatar. */
export function initials(name: string): string {
  const parts = name
    .replace(/\(you\)/, '')
    .split(/[\s._-]+/)
    .filter(Boolean)
  if (parts.length === 0) return '?'
  if (parts.length === 1) return parts[0][0].toUpperCase()
  return (parts[0][0] + parts[1][0]).toUpperCase()
}

const palette = ['#e17076', '#7bc862', '#65aadd', '#a695e7', '#ee7aae', '#6ec9cb', '#faa774', '#5f8fd8']

/** A stable colour for a user or group id. */
export function avatarColor(id: string): string {
  let h = 0
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0
  return palette[h % palette.length]
}
