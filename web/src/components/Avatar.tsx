import type { Presence } from '@parley/client'
import { avatarColor, initials } from '../format'

export function Avatar({ id, name, size = 44, presence, group }: { id: string; name: string; size?: number; presence?: Presence['status']; group?: boolean }) {
  return (
    <span className={`avatar${group ? ' group' : ''}`} style={{ width: size, height: size, background: avatarColor(id), fontSize: size * 0.38 }} aria-hidden="true">
      {initials(name)}
      {presence && presence !== 'hidden' && <span className={`dot ${presence}`} data-presence={presence} />}
    </span>
  )
}
