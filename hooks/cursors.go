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
func (h *Inbox) runCursors() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.CursorFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.flushCursors()
		case <-h.quit:
			h.flushCursors()
			return
		}
	}
}

func (h *Inbox) flushCursors() {
	h.cursorMu.Lock()
	if len(h.dirty) == 0 {
		h.cursorMu.Unlock()
		return
	}
	dirty := h.dirty
	h.dirty = make(map[cursorKey]int64, len(dirty))
	h.cursorMu.Unlock()

	cs := make([]storage.Cursor, 0, len(dirty))
	for k, seq := range dirty {
		cs = append(cs, storage.Cursor{ClientID: k.client, Inbox: k.inbox, Seq: seq})
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	err := h.store.SaveCursors(ctx, cs)
	cancel()
	if err == nil {
		return
	}
	h.metrics.CursorErrors.Inc()
	h.log.Warn("save cursors", "count", len(cs), "error", err)
	if errors.Is(err, storage.ErrInvalid) {
		// The store saved every cursor it could hold and dropped the rest
		// (a client id too long for an index, say): trying those again would
		// only fail again. A device without a cursor repeats, never loses.
		return
	}
	h.cursorMu.Lock()
	for k, seq := range dirty {
		if cur, ok := h.dirty[k]; !ok || cur < seq {
			h.dirty[k] = seq
		}
	}
	h.cursorMu.Unlock()
}
