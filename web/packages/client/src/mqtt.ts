import mqtt from 'mqtt'
import type { TransportFactory } from './transport.js'
import { decodeUtf8 } from './utf8.js'

/**
 * The Transport over MQTT.js: MQTT 5 over WebSocket (browsers, React
 * Native) or TCP (Node: an mqtt:// or mqtts:// URL), a persistent session
 * (clean start 0 with a session expiry), and no automatic reconnect: the
 * client decides when to try again.
 */
export const mqttTransport: TransportFactory = (opts, h) => {
  const c = mqtt.connect(opts.url, {
    protocolVersion: 5,
    clientId: opts.clientId,
    username: opts.username,
    password: opts.password,
    clean: false,
    properties: { sessionExpiryInterval: opts.sessionExpiry },
    keepalive: opts.keepalive,
    reconnectPeriod: 0,
    connectTimeout: opts.connectTimeout,
    resubscribe: false,
    will: opts.will
      ? { topic: opts.will.topic, payload: opts.will.payload, qos: opts.will.qos, retain: opts.will.retain }
      : undefined,
  })
  let closed = false
  let lastError: (Error & { code?: number }) | undefined
  const close = () => {
    if (closed) return
    closed = true
    h.onClose(lastError)
  }
  c.on('connect', (ack) => h.onConnect(!!ack.sessionPresent))
  c.on('error', (err) => {
    lastError = err as Error & { code?: number }
  })
  // A DISCONNECT from the server (MQTT 5) carries why: 0x87 when the
  // session's token was revoked or the account deleted, which the client
  // takes as "sign in again" without trying the dead token once more.
  c.on('disconnect', (pk) => {
    const code = (pk as { reasonCode?: number }).reasonCode
    if (typeof code === 'number' && code !== 0) {
      const reason = (pk as { properties?: { reasonString?: string } }).properties?.reasonString
      lastError = Object.assign(new Error(reason ?? `disconnected by the server (${code})`), { code })
    }
  })
  c.on('close', close)
  c.on('end', close)
  c.on('message', (topic, payload) => {
    h.onMessage(topic, typeof payload === 'string' ? payload : decodeUtf8(payload))
  })
  const whenClosed = () => new Error('connection lost')
  return {
    publish(topic, payload, o) {
      return new Promise((resolve, reject) => {
        if (closed) return reject(whenClosed())
        c.publish(topic, payload, { qos: o.qos, retain: !!o.retain }, (err, pk) => {
          const code = (err as any)?.code
          if (typeof code === 'number') return resolve(code)
          if (err) return reject(err)
          resolve((pk as any)?.reasonCode ?? 0)
        })
      })
    },
    subscribe(topics, qos) {
      return new Promise((resolve, reject) => {
        if (closed) return reject(whenClosed())
        c.subscribe(topics, { qos }, (err, granted) => {
          // MQTT.js fails the whole SUBACK when one topic is refused: the
          // client subscribes to one topic at a time to tell which.
          const code = (err as any)?.code
          if (typeof code === 'number') return resolve(topics.map(() => code))
          if (err) return reject(err)
          if (granted && granted.length === topics.length) return resolve(granted.map((g) => g.qos))
          resolve(topics.map(() => 0x80))
        })
      })
    },
    unsubscribe(topics) {
      return new Promise((resolve) => {
        if (closed) return resolve()
        c.unsubscribe(topics, () => resolve())
      })
    },
    close(graceful) {
      if (graceful) c.end(false, {}, close)
      else c.end(true, close)
    },
  }
}
