package hooks

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// runReceipts turns recipients' acknowledgements into delivered receipts:
// acknowledgements arriving within ReceiptDelay of each other become one
// receipt per (sender, recipient), and a message acknowledged by several of
// the recipient's devices is reported once.
func (h *Inbox) runReceipts() {
	defer h.wg.Done()
	receipted := map[string]*receiptState{} // recipient inbox -> seqs already reported
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	var batch []ackEvent
	var flush <-chan time.Time
	for {
		select {
		case ev := <-h.receipts:
			batch = append(batch, ev)
			if flush == nil {
				flush = time.After(h.cfg.ReceiptDelay)
			}
			if len(batch) < 1024 {
				continue
			}
		case <-flush:
		case now := <-sweep.C:
			for k, st := range receipted {
				if now.Sub(st.used) > 10*time.Minute {
					delete(receipted, k)
				}
			}
			continue
		case <-h.quit:
			return
		}
		flush = nil
		h.sendReceipts(batch, receipted)
		batch = batch[:0]
	}
}

type receiptState struct {
	seen watermark
	used time.Time
}

type receiptKey struct{ to, by, inbox string }

func (h *Inbox) sendReceipts(batch []ackEvent, receipted map[string]*receiptState) {
	now := h.now()
	groups := map[receiptKey][]string{}
	var order []receiptKey
	for _, ev := range batch {
		st := receipted[ev.inbox]
		if st == nil {
			st = &receiptState{seen: watermark{w: ev.seq - 1}}
			receipted[ev.inbox] = st
		}
		st.used = now
		if st.seen.seen(ev.seq) {
			continue
		}
		st.seen.ack(ev.seq)
		k := receiptKey{ev.to, ev.by, ev.inbox}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], ev.id)
	}
	// Store the receipts concurrently, so that group commit takes them in a
	// few transactions instead of one commit after another.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, k := range order {
		id, err := uuid.NewV7()
		if err != nil {
			h.log.Warn("receipt id", "error", err)
			continue
		}
		m := storage.Message{ID: id.String(), From: k.by, To: k.to, TS: now.UnixMilli(), Type: protocol.TypeReceipt,
			Data: protocol.ReceiptData("delivered", k.by, k.inbox, groups[k]), Inboxes: []string{protocol.UserInbox(k.to)}}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h.storeReceipt(m)
		}()
	}
	wg.Wait()
}

func (h *Inbox) storeReceipt(m storage.Message) {
	var es []protocol.Entry
	var err error
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
		es, _, err = h.store.Append(ctx, m)
		cancel()
		if err == nil || attempt == 5 || h.closed.Load() {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if err != nil {
		h.log.Warn("store receipt", "to", m.To, "by", m.From, "error", err)
		return
	}
	h.metrics.Receipts.Inc()
	h.deliver(es[0], 1)
}
