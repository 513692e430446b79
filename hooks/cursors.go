package hooks

import (
	"context"
	"errors"
	"time"

	"github.com/parleychat/parley/storage"
)

// runCursors writes moved delivery cursors every CursorFlush, and once more
// when the hook closes. A failed write is retried with the next flush; a
// cursor that is stored late only causes redelivery, never loss.
func (a *acks) runCursors() {
	t := time.NewTicker(a.cfg.CursorFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.flushCursors()
		case <-a.w.quit:
			a.flushCursors()
			return
		}
	}
}

func (a *acks) flushCursors() {
	a.cursorMu.Lock()
	if len(a.dirty) == 0 {
		a.cursorMu.Unlock()
		return
	}
	dirty := a.dirty
	a.dirty = make(map[cursorKey]int64, len(dirty))
	a.cursorMu.Unlock()

	cs := make([]storage.Cursor, 0, len(dirty))
	for k, seq := range dirty {
		cs = append(cs, storage.Cursor{ClientID: k.client, Inbox: k.inbox, Seq: seq})
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StoreTimeout)
	err := a.store.SaveCursors(ctx, cs)
	cancel()
	if err == nil {
		return
	}
	a.metrics.CursorErrors.Inc()
	a.log.Warn("save cursors", "count", len(cs), "error", err)
	if errors.Is(err, storage.ErrInvalid) {
		// The store saved every cursor it could hold and dropped the rest
		// (a client id too long for an index, say): trying those again would
		// only fail again. A device without a cursor repeats, never loses.
		return
	}
	a.cursorMu.Lock()
	for k, seq := range dirty {
		if cur, ok := a.dirty[k]; !ok || cur < seq {
			a.dirty[k] = seq
		}
	}
	a.cursorMu.Unlock()
}
