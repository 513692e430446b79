// The part of MQTT.js (the npm package "mqtt") that src/mqtt.ts uses,
// typed without Node's or the DOM's types: MQTT.js's own declarations pull
// in @types/node, which would let Buffer or process into the core unseen.
// tsconfig.json maps "mqtt" here; tsconfig.test.json checks src/mqtt.ts
// against MQTT.js's real declarations, so that this cannot drift.
interface PacketProperties {
  reasonString?: string
  sessionExpiryInterval?: number
}

export interface IClientOptions {
  protocolVersion: 5
  clientId: string
  username: string
  password: string
  clean: boolean
  properties: { sessionExpiryInterval: number }
  keepalive: number
  reconnectPeriod: number
  connectTimeout: number
  resubscribe: boolean
  will?: { topic: string; payload: string; qos: 0 | 1; retain: boolean }
}

export interface MqttClient {
  on(event: 'connect', cb: (ack: { sessionPresent?: boolean }) => void): this
  on(event: 'error', cb: (err: Error) => void): this
  on(event: 'disconnect', cb: (pk: { reasonCode?: number; properties?: PacketProperties }) => void): this
  on(event: 'close' | 'end', cb: () => void): this
  on(event: 'message', cb: (topic: string, payload: Uint8Array | string) => void): this
  publish(
    topic: string,
    payload: string,
    opts: { qos: 0 | 1; retain: boolean },
    cb: (err?: Error & { code?: number }, pk?: { reasonCode?: number }) => void,
  ): this
  subscribe(topics: string[], opts: { qos: 0 | 1 }, cb: (err: (Error & { code?: number }) | null, granted?: { qos: number }[]) => void): this
  unsubscribe(topics: string[], cb: () => void): this
  end(force: boolean, opts: object, cb: () => void): this
  end(force: boolean, cb: () => void): this
}

declare const mqtt: { connect(url: string, opts: IClientOptions): MqttClient }
export default mqtt
