import { describe, expect, it } from 'vitest'
import { decodeUtf8 } from './utf8.js'

// Node's TextDecoder is the reference; the SDK's core cannot use it
// (React Native's Hermes has none).
const reference = new TextDecoder()
const bytes = (...b: number[]) => new Uint8Array(b)

describe('decodeUtf8', () => {
  it('decodes text of every width', () => {
    for (const s of ['', 'hello', 'é', 'héllo wörld', '€ ☀️ 中文', '𝄞 emoji 👍🏽 and 🇫🇷', 'a\u0000b', '\uffff\u{10000}\u{10ffff}']) {
      expect(decodeUtf8(new TextEncoder().encode(s))).toBe(s)
    }
  })

  it('replaces malformed sequences as TextDecoder does', () => {
    const cases = [
      bytes(0x80),
      bytes(0xc0, 0x80), // overlong
      bytes(0xc2), // cut short
      bytes(0xe2, 0x82), // cut short
      bytes(0xe2, 0x82, 0x41),
      bytes(0xe0, 0x80, 0x80), // overlong
      bytes(0xed, 0xa0, 0x80), // a surrogate
      bytes(0xf0, 0x8f, 0xbf, 0xbf), // overlong
      bytes(0xf4, 0x90, 0x80, 0x80), // above U+10FFFF
      bytes(0xf5, 0x41),
      bytes(0xff, 0xfe, 0x41),
      bytes(0xf0, 0x9f, 0x91),
      bytes(0x41, 0xf0, 0x9f, 0x91, 0x8d, 0xf0, 0x9f),
    ]
    for (const b of cases) expect(decodeUtf8(b), `${[...b]}`).toBe(reference.decode(b))
  })

  it('agrees with TextDecoder on random bytes', () => {
    let x = 12345
    const rand = () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) & 0xff
    for (let n = 0; n < 2000; n++) {
      const len = rand() % 24
      // Mostly bytes of multi-byte sequences, where the edge cases are.
      const b = new Uint8Array(len).map(() => (rand() < 64 ? rand() & 0x7f : 0x80 | rand()))
      expect(decodeUtf8(b), `${[...b]}`).toBe(reference.decode(b))
    }
  })

  it('decodes long payloads', () => {
    const s = 'ab€😀'.repeat(20_000)
    expect(decodeUtf8(new TextEncoder().encode(s))).toBe(s)
  })
})
