// The few platform APIs the SDK's core uses, which browsers, Node and
// React Native (Hermes) all have. Declared here so that the core is
// type-checked with the ES2022 library alone (tsconfig.json): no DOM, no
// Node. What is not declared here cannot be used: not window, document,
// localStorage, Buffer, process, TextDecoder (missing on Hermes) or
// URLSearchParams (incomplete on older React Native); the core has its own
// UTF-8 decoder (utf8.ts) and builds query strings by hand.
declare function setTimeout(fn: () => void, ms?: number): unknown
declare function clearTimeout(t: unknown): void
declare function setInterval(fn: () => void, ms?: number): unknown
declare function clearInterval(t: unknown): void
declare function queueMicrotask(fn: () => void): void
declare const console: { error(...args: unknown[]): void; warn(...args: unknown[]): void }
