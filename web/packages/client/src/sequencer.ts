import type { Entry, HistoryPage } from './types.js'

export type Source = 'latest' | 'live' | 'gap' | 'catchup'

export interface SequencerDeps {
  /** GET /v1/messages?inbox=…&after=… */
  fetchAfter(after: number): Promise<HistoryPage>
  /** Receives entries in seq order, each exactly once. */
  deliver(entries: Entry[], source: Source): void
  onError?(err: unknown): void
  /** Delay before the nth retry of a failed fetch, ms. */
  retryDelay?(attempt: number): number
  sleep?(ms: number): Promise<void>
}

/**
 * Puts one inbox's entries in order: it keeps the highest seq delivered
 * (`last`), drops repeats (an entry may arrive twice after a reconnect),
 * holds back entries that arrive after a jump and fetches what is missing
 * with the history API, then delivers everything in seq order.
 */
export class InboxSequencer {
  /** The highest seq delivered; everything below it was delivered or is older than the baseline. */
  last: number | undefined
  /** Repeats dropped so far. */
  duplicates = 0
  private readonly held = new Map<number, Entry>()
  private wantCatchUp = false
  private running = false
  private stopped = false

  constructor(
    readonly inbox: string,
    private readonly deps: SequencerDeps,
  ) {}

  /** Whether the baseline is known (the newest page was read). */
  get ready(): boolean {
    return this.last !== undefined
  }

  /**
   * Sets the baseline: the highest seq the caller holds (from the newest
   * page, or 0 for an empty inbox). Entries held until then are delivered or
   * dropped against it.
   */
  setBaseline(seq: number): void {
    if (this.last !== undefined && seq <= this.last) return
    this.last = seq
    this.drain('live')
  }

  /** Takes an entry received live. */
  push(e: Entry): void {
    if (this.stopped) return
    if (this.last !== undefined && e.seq <= this.last) {
      this.duplicates++
      return
    }
    if (this.held.has(e.seq)) {
      this.duplicates++
      return
    }
    this.held.set(e.seq, e)
    if (this.last !== undefined) this.drain('live')
  }

  /** Fetches everything stored above `last` (after a reconnect). */
  catchUp(): void {
    if (this.stopped || this.last === undefined) return
    this.wantCatchUp = true
    void this.work()
  }

  /** Stops fetching; held entries are dropped. */
  stop(): void {
    this.stopped = true
    this.held.clear()
  }

  /** Delivers the held entries that follow `last`; starts a fetch if a gap remains. */
  private drain(source: Source): number {
    if (this.last === undefined) return 0
    for (const seq of this.held.keys()) {
      if (seq <= this.last) this.held.delete(seq)
    }
    const out: Entry[] = []
    for (let next = this.held.get(this.last + 1); next; next = this.held.get(this.last + 1)) {
      this.held.delete(next.seq)
      this.last = next.seq
      out.push(next)
    }
    if (out.length) this.deps.deliver(out, source)
    if (this.held.size > 0) void this.work()
    return out.length
  }

  private async work(): Promise<void> {
    if (this.running || this.stopped) return
    this.running = true
    let attempt = 0
    try {
      while (!this.stopped && this.last !== undefined && (this.wantCatchUp || this.held.size > 0)) {
        const catchingUp = this.wantCatchUp
        let page: HistoryPage
        try {
          page = await this.deps.fetchAfter(this.last)
        } catch (err) {
          this.deps.onError?.(err)
          const delay = this.deps.retryDelay?.(attempt++) ?? Math.min(30_000, 500 * 2 ** attempt)
          await (this.deps.sleep ?? sleep)(delay)
          continue
        }
        attempt = 0
        if (this.stopped) return
        for (const e of page.entries) {
          if (e.seq > this.last && !this.held.has(e.seq)) this.held.set(e.seq, e)
        }
        const got = this.drain(catchingUp ? 'catchup' : 'gap')
        if (!page.more) this.wantCatchUp = false
        if (got === 0 && !page.more && this.held.size > 0) {
          // The store has nothing where the gap is: it cannot happen while
          // seqs are gapless, but held entries must not wait forever.
          const first = Math.min(...this.held.keys())
          this.deps.onError?.(new Error(`${this.inbox}: seqs ${this.last + 1}–${first - 1} are missing on the server`))
          this.last = first - 1
          this.drain('gap')
        }
      }
    } finally {
      this.running = false
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
