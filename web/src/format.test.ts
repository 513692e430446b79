import { describe, expect, it } from 'vitest'
import { avatarColor, dayLabel, initials, lastSeen, otherDay } from './format'

describe('format', () => {
  const now = new Date(2026, 10, 27, 15, 0).getTime()
  it('labels days', () => {
    expect(dayLabel(new Date(2026, 10, 27, 9, 0).getTime(), now)).toBe('Today')
    expect(dayLabel(new Date(2026, 10, 26, 23, 59).getTime(), now)).toBe('Yesterday')
    expect(dayLabel(new Date(2025, 0, 5).getTime(), now)).toMatch(/2025/)
  })
  it('tells days apart', () => {
    expect(otherDay(new Date(2026, 10, 27, 0, 1).getTime(), new Date(2026, 10, 26, 23, 59).getTime())).toBe(true)
    expect(otherDay(new Date(2026, 10, 27, 0, 1).getTime(), new Date(2026, 10, 27, 23, 59).getTime())).toBe(false)
  })
  it('says when someone was last seen', () => {
    expect(lastSeen(now - 10_000, now)).toBe('last seen just now')
    expect(lastSeen(now - 5 * 60_000, now)).toBe('last seen 5 min ago')
    expect(lastSeen(new Date(2026, 10, 27, 9, 5).getTime(), now)).toMatch(/^last seen today at/)
    expect(lastSeen(undefined, now)).toBe('offline')
  })
  it('makes initials and stable colours', () => {
    expect(initials('Alice Liddell')).toBe('AL')
    expect(initials('bob')).toBe('B')
    expect(initials('team.rocket')).toBe('TR')
    expect(avatarColor('alice')).toBe(avatarColor('alice'))
  })
})
