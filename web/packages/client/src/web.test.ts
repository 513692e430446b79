import { describe, expect, it } from 'vitest'
import { wsUrlFrom } from './web.js'

describe('wsUrlFrom', () => {
  const http = { protocol: 'http:', hostname: 'chat.example.com' }
  it.each([
    ['8083', http, 'ws://chat.example.com:8083/mqtt'],
    [':9001/mqtt', http, 'ws://chat.example.com:9001/mqtt'],
    [':9001/ws', http, 'ws://chat.example.com:9001/ws'],
    ['8083', { protocol: 'https:', hostname: 'chat.example.com' }, 'wss://chat.example.com:8083/mqtt'],
    ['wss://edge.example.com/mqtt', http, 'wss://edge.example.com/mqtt'],
    ['', http, 'ws://chat.example.com:8083/mqtt'],
    [null, { protocol: 'http:', hostname: '::1' }, 'ws://[::1]:8083/mqtt'],
  ])('%s on %o', (meta, loc, want) => {
    expect(wsUrlFrom(meta, loc)).toBe(want)
  })
})
