/**
 * The MQTT connection the client needs, kept small so that tests can fake it
 * and another MQTT library could stand in. mqttTransport (mqtt.ts) is the
 * real one, over MQTT.js. One Transport is one connection attempt: the
 * client makes a new one to reconnect, so that nothing of a dead connection
 * (packet ids, callbacks) leaks into the next.
 */
export interface Transport {
  /** Publishes and resolves with the PUBACK's reason code (0 for QoS 0). Rejects if the connection is lost first. */
  publish(topic: string, payload: string, opts: { qos: 0 | 1; retain?: boolean }): Promise<number>
  /** Subscribes and resolves with one granted QoS or reason code per topic. */
  subscribe(topics: string[], qos: 0 | 1): Promise<number[]>
  unsubscribe(topics: string[]): Promise<void>
  /** Closes the connection; graceful sends DISCONNECT (no will). */
  close(graceful: boolean): void
}

export interface TransportHandlers {
  /** CONNACK accepted. */
  onConnect(sessionPresent: boolean): void
  /** The connection is gone (or never came up). code is the CONNACK refusal, if that is why. */
  onClose(err?: Error & { code?: number }): void
  onMessage(topic: string, payload: string): void
}

export interface TransportOptions {
  url: string
  clientId: string
  username: string
  password: string
  /** MQTT 5 session expiry interval, seconds; the session is persistent (clean start 0). */
  sessionExpiry: number
  keepalive: number
  will?: { topic: string; payload: string; retain: boolean; qos: 0 | 1 }
  connectTimeout: number
}

export type TransportFactory = (opts: TransportOptions, handlers: TransportHandlers) => Transport
