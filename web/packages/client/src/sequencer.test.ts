import { describe, expect, it } from 'vitest'
import { FakeServer, settle } from './fakes.js'
import { InboxSequencer, type Source } from './sequencer.js'
import type { Entry } from './types.js'

function setup(server = new FakeServer()) {
  const got: { seq: number; source: Source }[] = []
  const errors: unknown[] = []
  const sq = new InboxSequencer('u/bob', {
    fetchAfter: async (after) => {
      const res = await server.fetch(`/v1/messages?inbox=u/bob&after=${after}&limit=2`)
      if (!res.ok) throw new Error(await res.text())
      return JSON.parse(await res.text())
    },
    deliver: (es, source) => got.push(...es.map((e) => ({ seq: e.seq, source }))),
    onError: (e) => errors.push(e),
    retryDelay: () => 0,
    sleep: async () => {},
  })
  return { server, sq, got, errors, seqs: () => got.map((g) => g.seq) }
}

const entry = (seq: number): Entry => ({ id: `m${seq}`, inbox: 'u/bob', seq, from: 'alice', to: 'bob', ts: seq, type: 'msg', body: {} })

describe('InboxSequencer', () => {
  it('delivers entries in order once the baseline is set', () => {
    const { sq, seqs } = setup()
    sq.push(entry(4))
    sq.push(entry(5))
    expect(seqs()).toEqual([])
    sq.setBaseline(3)
    expect(seqs()).toEqual([4, 5])
    sq.push(entry(6))
    expect(seqs()).toEqual([4, 5, 6])
  })

  it('drops repeats by seq', () => {
    const { sq, seqs } = setup()
    sq.setBaseline(0)
    for (const s of [1, 2, 1, 2, 3, 3]) sq.push(entry(s))
    expect(seqs()).toEqual([1, 2, 3])
    expect(sq.duplicates).toBe(3)
  })

  it('drops entries at or below the baseline', () => {
    const { sq, seqs } = setup()
    sq.push(entry(2))
    sq.push(entry(3))
    sq.setBaseline(3)
    expect(seqs()).toEqual([])
  })

  it('fills a gap from the history API before delivering what came after it', async () => {
    const t = setup()
    for (let i = 1; i <= 6; i++) t.server.store('u/bob', { id: `m${i}` })
    t.sq.setBaseline(1)
    t.sq.push(entry(6)) // 2..5 missing
    expect(t.seqs()).toEqual([])
    await settle(50)
    expect(t.seqs()).toEqual([2, 3, 4, 5, 6])
    expect(t.got.map((g) => g.source)).toEqual(['gap', 'gap', 'gap', 'gap', 'gap'])
    expect(t.server.requests.filter((r) => r.includes('after=')).length).toBeGreaterThanOrEqual(2) // pages of 2
  })

  it('keeps live entries that arrive during a fetch in order', async () => {
    const t = setup()
    for (let i = 1; i <= 5; i++) t.server.store('u/bob', { id: `m${i}` })
    t.sq.setBaseline(0)
    t.sq.push(entry(3))
    t.sq.push(entry(5))
    t.sq.push(entry(4))
    await settle(50)
    expect(t.seqs()).toEqual([1, 2, 3, 4, 5])
  })

  it('retries a failed fetch', async () => {
    const t = setup()
    for (let i = 1; i <= 3; i++) t.server.store('u/bob', { id: `m${i}` })
    t.server.failNext = 2
    t.sq.setBaseline(0)
    t.sq.push(entry(3))
    await settle(80)
    expect(t.seqs()).toEqual([1, 2, 3])
    expect(t.errors.length).toBe(2)
  })

  it('catches up on everything above last, page by page', async () => {
    const t = setup()
    for (let i = 1; i <= 7; i++) t.server.store('u/bob', { id: `m${i}` })
    t.sq.setBaseline(2)
    t.sq.catchUp()
    await settle(80)
    expect(t.seqs()).toEqual([3, 4, 5, 6, 7])
    expect(t.got.every((g) => g.source === 'catchup')).toBe(true)
  })

  it('does not wait forever for seqs the server does not have', async () => {
    const t = setup()
    t.server.store('u/bob', {})
    t.sq.setBaseline(1)
    t.sq.push(entry(4))
    await settle(50)
    expect(t.seqs()).toEqual([4])
    expect(String(t.errors[0])).toMatch(/missing/)
  })
})
