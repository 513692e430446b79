/**
 * Parley's client SDK: the HTTP API, an MQTT 5 connection with a persistent
 * session, the outbox, ordered inboxes, and a ChatStore for UIs. It uses no
 * DOM API, so React Native can use it too: pass your own storage.
 */
import { ParleyClient, type ClientOptions } from './client'
import { mqttTransport } from './mqtt'

export * from './types'
export * from './api'
export * from './client'
export * from './chat'
export * from './storage'
export * from './sequencer'
export type { Transport, TransportFactory, TransportHandlers, TransportOptions } from './transport'
export { mqttTransport }

/** A ParleyClient over MQTT.js. */
export function createClient(opts: Omit<ClientOptions, 'transport'> & Partial<Pick<ClientOptions, 'transport'>>): ParleyClient {
  return new ParleyClient({ transport: mqttTransport, ...opts })
}
