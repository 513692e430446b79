/**
 * Decodes UTF-8 bytes to a string, as TextDecoder would (malformed
 * sequences become U+FFFD), without it: Hermes, React Native's engine, has
 * no TextDecoder.
 */
export function decodeUtf8(bytes: Uint8Array): string {
  const n = bytes.length
  let out = ''
  let chunk: number[] = []
  const flush = () => {
    out += String.fromCharCode.apply(null, chunk)
    chunk = []
  }
  for (let i = 0; i < n; ) {
    const b = bytes[i]
    if (b < 0x80) {
      chunk.push(b)
      i++
    } else {
      let need = 0
      let cp = 0
      let min = 0
      if (b >= 0xc2 && b <= 0xdf) [need, cp, min] = [1, b & 0x1f, 0x80]
      else if (b >= 0xe0 && b <= 0xef) [need, cp, min] = [2, b & 0x0f, 0x800]
      else if (b >= 0xf0 && b <= 0xf4) [need, cp, min] = [3, b & 0x07, 0x10000]
      let j = 1
      if (need > 0) {
        for (; j <= need && i + j < n; j++) {
          const c = bytes[i + j]
          if ((c & 0xc0) !== 0x80) break
          cp = (cp << 6) | (c & 0x3f)
          // Overlong forms, surrogates and code points above U+10FFFF fail
          // as early as the WHATWG decoder says (at the second byte).
          if (j === 1 && ((need === 2 && ((b === 0xe0 && c < 0xa0) || (b === 0xed && c > 0x9f))) || (need === 3 && ((b === 0xf0 && c < 0x90) || (b === 0xf4 && c > 0x8f))))) {
            break
          }
        }
      }
      if (need > 0 && j === need + 1 && cp >= min) {
        if (cp >= 0x10000) {
          cp -= 0x10000
          chunk.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff))
        } else {
          chunk.push(cp)
        }
        i += need + 1
      } else {
        // A lead byte that cannot start a sequence, or a sequence cut
        // short: one U+FFFD for the maximal valid prefix, as TextDecoder.
        chunk.push(0xfffd)
        i += need > 0 ? Math.max(1, j) : 1
      }
    }
    if (chunk.length >= 8192) flush()
  }
  flush()
  return out
}
