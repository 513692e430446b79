package hooks

import (
	"context"
	"slices"
	"strings"
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
	groupAcks := map[string]*groupAck{}     // group message id -> who has it
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
			for id, ga := range groupAcks {
				if now.Sub(ga.used) > 10*time.Minute {
					delete(groupAcks, id)
				}
			}
			continue
		case <-h.quit:
			return
		}
		flush = nil
		h.sendReceipts(batch, receipted, groupAcks)
		batch = batch[:0]
	}
}

// receiptState is which seqs of one recipient inbox have been reported as
// delivered. A set rather than a watermark: acknowledgements arrive out of
// order, and the first one seen says nothing about the seqs below it. When
// it grows past maxReceipted it starts again, which can only repeat a
// receipt (harmless), never skip one.
type receiptState struct {
	seen map[int64]struct{}
	used time.Time
}

const maxReceipted = 4096

type receiptKey struct{ to, by, inbox string }

// groupAck is who has acknowledged one group message.
type groupAck struct {
	by   map[string]struct{}
	used time.Time
}

const maxGroupAcks = 200_000

func (h *Inbox) sendReceipts(batch []ackEvent, receipted map[string]*receiptState, groupAcks map[string]*groupAck) {
	now := h.now()
	groups := map[receiptKey][]string{}
	var order []receiptKey
	// Group messages: one receipt per sender and group per batch, with how
	// many of the other members have the messages (the fewest of the batch).
	type gkey struct{ to, inbox string }
	gids := map[gkey][]string{}
	var gorder []gkey
	for _, ev := range batch {
		if !strings.HasPrefix(ev.inbox, protocol.GroupPrefix) {
			continue
		}
		ga := groupAcks[ev.id]
		if ga == nil {
			if len(groupAcks) >= maxGroupAcks {
				clear(groupAcks)
			}
			ga = &groupAck{by: map[string]struct{}{}}
			groupAcks[ev.id] = ga
		}
		ga.used = now
		if _, ok := ga.by[ev.by]; ok {
			continue // another device of the same member
		}
		ga.by[ev.by] = struct{}{}
		k := gkey{ev.to, ev.inbox}
		if _, ok := gids[k]; !ok {
			gorder = append(gorder, k)
		}
		if !slices.Contains(gids[k], ev.id) {
			gids[k] = append(gids[k], ev.id)
		}
	}
	var msgs []storage.Message
	for _, k := range gorder {
		// One receipt per count, so that every message is reported with
		// how many members have it (a batch mixes messages acknowledged by
		// different numbers of members).
		byCount := map[int][]string{}
		var counts []int
		for _, id := range gids[k] {
			n := len(groupAcks[id].by)
			if _, ok := byCount[n]; !ok {
				counts = append(counts, n)
			}
			byCount[n] = append(byCount[n], id)
		}
		of := h.memberCount(k.inbox[len(protocol.GroupPrefix):]) - 1
		for _, n := range counts {
			msgs = append(msgs, storage.Message{From: "", To: k.to, TS: now.UnixMilli(), Type: protocol.TypeReceipt, Conv: k.inbox,
				Data:    protocol.GroupReceiptData("delivered", k.inbox, byCount[n], n, max(of, n)),
				Inboxes: []string{protocol.UserInbox(k.to)}})
		}
	}
	for _, ev := range batch {
		if strings.HasPrefix(ev.inbox, protocol.GroupPrefix) {
			continue
		}
		st := receipted[ev.inbox]
		if st == nil {
			st = &receiptState{seen: map[int64]struct{}{}}
			receipted[ev.inbox] = st
		}
		st.used = now
		if _, ok := st.seen[ev.seq]; ok {
			continue // another device of the recipient
		}
		if len(st.seen) >= maxReceipted {
			clear(st.seen)
		}
		st.seen[ev.seq] = struct{}{}
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
		msgs = append(msgs, storage.Message{From: k.by, To: k.to, TS: now.UnixMilli(), Type: protocol.TypeReceipt,
			Data: protocol.ReceiptData("delivered", k.by, k.inbox, groups[k]), Inboxes: []string{protocol.UserInbox(k.to)}})
	}
	for _, m := range msgs {
		id, err := uuid.NewV7()
		if err != nil {
			h.log.Warn("receipt id", "error", err)
			continue
		}
		m.ID = id.String()
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
