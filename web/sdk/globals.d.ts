// The few platform APIs the SDK uses, which browsers, Node and React Native
// all have. Declared here so that the SDK is type-checked without the DOM.
declare function setTimeout(fn: () => void, ms?: number): unknown
declare function clearTimeout(t: unknown): void
declare function setInterval(fn: () => void, ms?: number): unknown
declare function clearInterval(t: unknown): void
declare function queueMicrotask(fn: () => void): void
declare class TextDecoder {
  decode(input?: ArrayBufferView | ArrayBuffer): string
}
declare class URLSearchParams {
  constructor(init?: Record<string, string>)
  set(name: string, value: string): void
  toString(): string
}
declare const console: { error(...args: unknown[]): void; warn(...args: unknown[]): void }
