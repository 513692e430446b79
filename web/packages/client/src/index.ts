/**
 * Parley's client SDK: the HTTP API, an MQTT 5 connection with a persistent
 * session, the outbox, ordered inboxes, and a ChatStore for UIs. The core
 * uses no DOM and no Node API (tsconfig.json checks it with the ES2022
 * library alone), so that browsers, Node and React Native run it as it is:
 * pass your own storage. Browser helpers are in `@parley/client/web`.
 */
import { ParleyClient, type ClientOptions } from './client.js'
import { mqttTransport } from './mqtt.js'

export * from './types.js'
export * from './wire.js'
export * from './api.js'
export * from './client.js'
export * from './chat.js'
export * from './storage.js'
export * from './sequencer.js'
export { decodeUtf8 } from './utf8.js'
export type { Transport, TransportFactory, TransportHandlers, TransportOptions } from './transport.js'
export { mqttTransport }

/** A ParleyClient over MQTT.js. */
export function createClient(opts: Omit<ClientOptions, 'transport'> & Partial<Pick<ClientOptions, 'transport'>>): ParleyClient {
  return new ParleyClient({ transport: mqttTransport, ...opts })
}
