/** A small typed event emitter with no platform dependency. */
export class Emitter<Events extends { [K in keyof Events]: (...args: any[]) => void }> {
  private handlers: { [K in keyof Events]?: Set<Events[K]> } = {}

  /** Adds a handler and returns the function that removes it. */
  on<K extends keyof Events>(event: K, fn: Events[K]): () => void {
    let set = this.handlers[event]
    if (!set) {
      set = new Set()
      this.handlers[event] = set
    }
    set.add(fn)
    return () => {
      set.delete(fn)
    }
  }

  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const set = this.handlers[event]
    if (!set) return
    for (const fn of [...set]) {
      try {
        fn(...args)
      } catch (err) {
        // A failing handler must not break the SDK's own bookkeeping.
        console.error(`parley: ${String(event)} handler failed`, err)
      }
    }
  }
}
