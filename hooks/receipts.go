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

type receiptState struct {
	seen watermark
	used time.Time
}

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
	gcount := map[gkey]int{}
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
	for k, ids := range gids {
		gcount[k] = len(groupAcks[ids[0]].by)
		for _, id := range ids[1:] {
			gcount[k] = min(gcount[k], len(groupAcks[id].by))
		}
	}
	var msgs []storage.Message
	for _, k := range gorder {
		of := h.memberCount(k.inbox[len(protocol.GroupPrefix):]) - 1
		msgs = append(msgs, storage.Message{From: "", To: k.to, TS: now.UnixMilli(), Type: protocol.TypeReceipt, Conv: k.inbox,
			Data:    protocol.GroupReceiptData("delivered", k.inbox, gids[k], gcount[k], max(of, gcount[k])),
			Inboxes: []string{protocol.UserInbox(k.to)}})
	}
	for _, ev := range batch {
		if strings.HasPrefix(ev.inbox, protocol.GroupPrefix) {
			continue
		}
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
