// The core runs in browsers, Node and React Native alike: tsconfig.json
// checks it with the ES2022 library and the few globals of globals.d.ts.
// This test proves that check bites: each platform-only API, used in a
// file of the core, is a type error, while the core itself has none.
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

const root = dirname(dirname(fileURLToPath(import.meta.url)))

function coreProgram(probe?: string) {
  const cfg = ts.readConfigFile(join(root, 'tsconfig.json'), ts.sys.readFile)
  const parsed = ts.parseJsonConfigFileContent(cfg.config, ts.sys, root)
  const probeFile = join(root, 'src', '__probe__.ts')
  const host = ts.createCompilerHost(parsed.options)
  const getSourceFile = host.getSourceFile
  host.getSourceFile = (name, lang, ...rest) =>
    name === probeFile && probe !== undefined ? ts.createSourceFile(name, probe, lang) : getSourceFile(name, lang, ...rest)
  const roots = probe === undefined ? parsed.fileNames : [...parsed.fileNames, probeFile]
  const program = ts.createProgram({ rootNames: roots, options: { ...parsed.options, noEmit: true }, host })
  return { program, probeFile }
}

// One line per API that a platform has and another lacks.
const forbidden = [
  'export const a = window',
  'export const a = document.title',
  'export const a = localStorage.getItem("k")',
  'export const a = navigator.onLine',
  'export const a = location.href',
  'export const a = new TextDecoder()', // not on Hermes
  'export const a = new TextEncoder()',
  'export const a = new URLSearchParams()', // incomplete on older React Native
  'export const a = new URL("http://x")',
  'export const a = Buffer.from("x")',
  'export const a = process.env',
  'export const a = require("node:fs")',
  'export const a = fetch',
  'export const a = atob("eA==")',
  'export const a = new WebSocket("ws://x")',
  'export const a = structuredClone({})',
]

describe('the core has no platform API', () => {
  it('type-checks without DOM or Node types', () => {
    const { program } = coreProgram()
    expect(ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([])
    const files = program.getSourceFiles().map((f) => f.fileName)
    expect(files.filter((f) => /@types\/node|lib\.dom|lib\.webworker/.test(f))).toEqual([])
    expect(files.filter((f) => f.includes('node_modules/mqtt/'))).toEqual([])
  })

  it('refuses window, document, localStorage, TextDecoder, Buffer, process and the like', () => {
    const { program, probeFile } = coreProgram(forbidden.map((l, i) => l.replace('const a', `const a${i}`)).join('\n'))
    const file = program.getSourceFile(probeFile)!
    const failing = new Set(
      ts
        .getPreEmitDiagnostics(program, file)
        .filter((d) => d.file?.fileName === probeFile)
        .map((d) => file.getLineAndCharacterOfPosition(d.start!).line),
    )
    expect(forbidden.filter((_, i) => !failing.has(i))).toEqual([])
  })

  it('allows what every platform has', () => {
    const { program, probeFile } = coreProgram(
      ['export const t = setTimeout(() => {}, 1)', 'clearTimeout(t)', 'queueMicrotask(() => {})', 'console.error("x")', 'export const j = JSON.stringify(new Map())'].join(
        '\n',
      ),
    )
    expect(ts.getPreEmitDiagnostics(program, program.getSourceFile(probeFile)).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual(
      [],
    )
  })
})
