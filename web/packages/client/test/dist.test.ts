// The built package (dist/, `npm run build`), used as a consumer uses it:
// imported by name through package.json's exports, run by Node's own
// ESM loader, and type-checked from its .d.ts files with Node's module
// resolution. Nothing here imports src/.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import {
  ChatStore,
  createClient,
  decodeEntry,
  entryTypes,
  memoryStorage,
  type Entry,
  type TransportFactory,
  type TransportHandlers,
} from '@parley/client'
import { wsUrlFrom } from '@parley/client/web'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

const pkgDir = dirname(dirname(fileURLToPath(import.meta.url)))
const goldenDir = join(pkgDir, '../../../protocol/testdata/golden')
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))

describe('the built package', () => {
  it('has every file its exports name', () => {
    const targets = Object.values(pkg.exports as Record<string, Record<string, string> | string>).flatMap((e) =>
      typeof e === 'string' ? [e] : Object.entries(e).filter(([cond]) => cond !== 'parley-source').map(([, f]) => f),
    )
    expect(targets.filter((f) => !existsSync(join(pkgDir, f)))).toEqual([])
    expect(targets).toContain('./dist/index.d.ts')
  })

  it('decodes every golden entry', () => {
    for (const type of entryTypes) {
      const raw = JSON.parse(readFileSync(join(goldenDir, 'entries', `${type}.json`), 'utf8')) as unknown[]
      for (const r of raw) expect(decodeEntry(r)).toEqual(r)
    }
    expect(readdirSync(join(goldenDir, 'entries')).length).toBe(entryTypes.length)
  })

  it('signs in, connects and delivers entries in order', async () => {
    let handlers: TransportHandlers | undefined
    const published: string[] = []
    const transport: TransportFactory = (opts, h) => {
      handlers = h
      expect(opts.url).toBe('mqtt://localhost:1883')
      expect(opts.clientId).toMatch(/^bob\/node-[0-9a-f]{8}$/)
      return {
        publish: async (topic, payload) => {
          published.push(`${topic} ${payload}`)
          return 0
        },
        subscribe: async (topics) => topics.map(() => 1),
        unsubscribe: async () => {},
        close: () => handlers?.onClose(),
      }
    }
    const page = readFileSync(join(goldenDir, 'api', 'messages.json'), 'utf8')
    const fetch = async (url: string) => {
      const body = url.startsWith('/v1/tokens')
        ? '{"token":"t"}'
        : url.startsWith('/v1/messages?inbox=u%2Fbob') && !url.includes('after=')
          ? page
          : url.startsWith('/v1/messages')
            ? '{"inbox":"u/bob","entries":[],"more":false}'
            : '{"error":"no such endpoint"}'
      const status = body.includes('"error"') ? 404 : 200
      return { status, ok: status < 300, text: async () => body }
    }
    const client = createClient({ apiUrl: '', mqttUrl: 'mqtt://localhost:1883', storage: memoryStorage(), transport, fetch, devicePrefix: 'node' })
    const store = new ChatStore(client, memoryStorage())
    const got: Entry[] = []
    client.on('entries', (_inbox, es) => got.push(...es))
    await client.signIn('bob', 'password-bob')
    handlers!.onConnect(false)
    await waitFor(() => got.length === 4)
    expect(got.map((e) => `${e.seq} ${e.type}`)).toEqual(['1 msg', '2 msg', '3 read', '4 member_added'])
    client.send('u/alice', { text: 'hi' })
    await waitFor(() => published.some((p) => p.startsWith('u/alice ')))
    await waitFor(() => store.getState().conversations.length > 0)
    expect(store.getState().conversations[0].key).toBe('u/alice')
    client.disconnect()
  })

  it('serves the browser helpers at @parley/client/web', () => {
    expect(wsUrlFrom('8083', { protocol: 'https:', hostname: 'chat.example.com' })).toBe('wss://chat.example.com:8083/mqtt')
  })

  it("runs in Node's own ESM loader", async () => {
    const script = `
      import { createClient, decodeEntry, decodeUtf8, memoryStorage } from '@parley/client'
      import { readFileSync } from 'node:fs'
      const raw = JSON.parse(readFileSync(process.argv[1], 'utf8'))
      const client = createClient({ apiUrl: 'http://127.0.0.1:1', mqttUrl: 'mqtt://127.0.0.1:1', storage: memoryStorage() })
      console.log(JSON.stringify({ types: raw.map((r) => decodeEntry(r).type), state: client.state, text: decodeUtf8(new Uint8Array([0xe2, 0x82, 0xac])) }))`
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, join(goldenDir, 'entries', 'receipt.json')], {
      cwd: pkgDir,
    })
    expect(JSON.parse(stdout)).toEqual({ types: ['receipt', 'receipt', 'receipt', 'receipt'], state: 'signed-out', text: '€' })
  })

  it('type-checks a consumer with Node16 resolution, from the .d.ts files', () => {
    const consumer = join(pkgDir, 'test', '__consumer__.ts')
    const source = `
      import { createClient, decodeEntry, memoryStorage, type Entry, type ParleyClient } from '@parley/client'
      import { browserStorage, wsUrlFrom } from '@parley/client/web'
      export function describe(e: Entry): string {
        switch (e.type) {
          case 'msg': return e.body.text ?? ''
          case 'receipt': return e.ids.join(',')
          case 'read': return String(e.read_seq)
          case 'unknown': return e.wireType
          default: return e.type
        }
      }
      export const c: ParleyClient = createClient({ apiUrl: '', mqttUrl: wsUrlFrom('8083', location), storage: memoryStorage() })
      export const s = browserStorage()
      export const e = decodeEntry({})
      // @ts-expect-error: a receipt has no body
      export const wrong = (x: Entry) => x.type === 'receipt' && x.body
    `
    const options: ts.CompilerOptions = {
      module: ts.ModuleKind.Node16,
      moduleResolution: ts.ModuleResolutionKind.Node16,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
      types: [],
      strict: true,
      noEmit: true,
      skipLibCheck: false,
    }
    const host = ts.createCompilerHost(options)
    const getSourceFile = host.getSourceFile
    host.getSourceFile = (name, lang, ...rest) => (name === consumer ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest))
    const program = ts.createProgram({ rootNames: [consumer], options, host })
    const diags = ts.getPreEmitDiagnostics(program).map((d) => `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`)
    expect(diags).toEqual([])
    const used = program.getSourceFiles().map((f) => f.fileName)
    expect(used.some((f) => f.endsWith('/dist/index.d.ts'))).toBe(true)
    expect(used.some((f) => f.includes('/src/'))).toBe(false)
  })
})

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 2))
  expect(cond()).toBe(true)
}
