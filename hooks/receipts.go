package hooks

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// DeliveryStore is what delivered receipts need of the store: who has which
// message, as a fact of the store rather than of one node's memory. In a
// cluster a user's devices may be on several nodes, each seeing its own
// acknowledgements; the store says which acknowledgement is the first of its
// user anywhere (one receipt per message, not one per node) and how many
// members have a group message on every node. storage.Store implements it.
type DeliveryStore interface {
	RecordDeliveries(ctx context.Context, ds []storage.Delivery) (firsts []storage.Delivery, counts map[string]int, err error)
}

// Recording deliveries is retried this many times in all, with receiptBackoff
// growing between attempts, before the receipts of a batch are sent from
// this node's memory.
const (
	recordAttempts = 3
	receiptBackoff = 100 * time.Millisecond
)

// runReceipts turns recipients' acknowledgements into delivered receipts.
// Acknowledgements arriving within ReceiptDelay of each other are recorded in
// the store in one write, which answers which of them are the first of their
// user anywhere: a message acknowledged by several of the recipient's
// devices, on one node or several, is reported once, and a group message is
// reported with the store's count of members who have it.
func (a *acks) runReceipts() {
	known := knownDeliveries{}
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	var batch []ackEvent
	var flush <-chan time.Time
	for {
		select {
		case ev := <-a.receipts:
			batch = append(batch, ev)
			if flush == nil {
				flush = time.After(a.cfg.ReceiptDelay)
			}
			if len(batch) < 1024 {
				continue
			}
		case <-flush:
		case now := <-sweep.C:
			known.sweep(now.Add(-10 * time.Minute))
			continue
		case <-a.w.quit:
			return
		}
		flush = nil
		a.sendReceipts(batch, known)
		batch = batch[:0]
	}
}

// knownDeliveries is what this node has recorded (or reported) lately:
// message id -> who has it. It is no authority (the store is): it spares the
// store the acknowledgements of a second device on the same node and of
// repeats after a reconnect, and gives a group message's count when the
// store cannot. Owned by runReceipts.
type knownDeliveries map[string]*knownMsg

type knownMsg struct {
	first string              // the first user known to have it
	more  map[string]struct{} // the others (group messages); nil until there is one
	used  time.Time
}

// maxKnown bounds knownDeliveries; past it, it starts again, which only
// sends acknowledgements to the store that it would have skipped.
const maxKnown = 200_000

func (k knownDeliveries) has(id, user string) bool {
	m := k[id]
	if m == nil {
		return false
	}
	_, ok := m.more[user]
	return ok || m.first == user
}

// add records that user has message id, and returns how many users this
// node knows to have it.
func (k knownDeliveries) add(id, user string, now time.Time) int {
	m := k[id]
	if m == nil {
		if len(k) >= maxKnown {
			clear(k)
		}
		m = &knownMsg{first: user}
		k[id] = m
	} else if m.first != user {
		if m.more == nil {
			m.more = map[string]struct{}{}
		}
		m.more[user] = struct{}{}
	}
	m.used = now
	return 1 + len(m.more)
}

// sweep forgets the messages not used since before.
func (k knownDeliveries) sweep(before time.Time) {
	for id, m := range k {
		if m.used.Before(before) {
			delete(k, id)
		}
	}
}

type receiptKey struct{ to, by, inbox string }

func (a *acks) sendReceipts(batch []ackEvent, known knownDeliveries) {
	now := a.now()
	// What this node has recorded already needs no write; what is left is
	// recorded in one.
	var ds []storage.Delivery
	events := map[storage.DeliveryKey]ackEvent{}
	for _, ev := range batch {
		dk := storage.DeliveryKey{ID: ev.id, User: ev.by}
		if _, ok := events[dk]; ok || known.has(ev.id, ev.by) {
			continue // another device of the same user, or a repeat
		}
		events[dk] = ev
		ds = append(ds, storage.Delivery{ID: ev.id, User: ev.by, Inbox: ev.inbox, At: now})
	}
	if len(ds) == 0 {
		return
	}
	due, counts := a.recordDeliveries(ds)
	seen := map[string]int{} // message id -> how many users this node knows to have it
	for _, d := range ds {
		seen[d.ID] = known.add(d.ID, d.User, now)
	}

	// The receipts due: one per sender and recipient per batch for direct
	// messages; for group messages one per sender and group per batch,
	// saying how many of the other members have the messages: the store's
	// count, or this node's own if higher (deliveries the store could not
	// record).
	type gkey struct{ to, inbox string }
	gids := map[gkey][]string{}
	var gorder []gkey
	groups := map[receiptKey][]string{}
	var order []receiptKey
	for _, d := range due {
		ev := events[d.Key()]
		if d.Counted() {
			k := gkey{ev.to, ev.inbox}
			if _, ok := gids[k]; !ok {
				gorder = append(gorder, k)
			}
			gids[k] = append(gids[k], ev.id)
			continue
		}
		k := receiptKey{ev.to, ev.by, ev.inbox}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], ev.id)
	}
	var msgs []storage.Message
	for _, k := range gorder {
		// One receipt per count, so that every message is reported with
		// how many members have it (a batch mixes messages acknowledged by
		// different numbers of members). A message of two members new in
		// this batch is due twice: reported once.
		byCount := map[int][]string{}
		var ns []int
		reported := map[string]bool{}
		for _, id := range gids[k] {
			if reported[id] {
				continue
			}
			reported[id] = true
			n := max(counts[id], seen[id])
			if _, ok := byCount[n]; !ok {
				ns = append(ns, n)
			}
			byCount[n] = append(byCount[n], id)
		}
		of := a.members.count(k.inbox[len(protocol.GroupPrefix):]) - 1
		for _, n := range ns {
			msgs = append(msgs, storage.Message{From: "", To: k.to, TS: now.UnixMilli(), Type: protocol.TypeReceipt, Conv: k.inbox,
				Data:    protocol.GroupReceiptData("delivered", k.inbox, byCount[n], n, max(of, n)),
				Inboxes: []string{protocol.UserInbox(k.to)}})
		}
	}
	for _, k := range order {
		msgs = append(msgs, storage.Message{From: k.by, To: k.to, TS: now.UnixMilli(), Type: protocol.TypeReceipt,
			Data: protocol.ReceiptData("delivered", k.by, k.inbox, groups[k]), Inboxes: []string{protocol.UserInbox(k.to)}})
	}
	// Store the receipts concurrently, so that group commit takes them in a
	// few transactions instead of one commit after another.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, m := range msgs {
		id, err := uuid.NewV7()
		if err != nil {
			a.log.Warn("receipt id", "error", err)
			continue
		}
		m.ID = id.String()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a.storeReceipt(m)
		}()
	}
	wg.Wait()
}

// recordDeliveries records ds in the store and returns those a receipt is
// due for, with the store's counts of the group messages among them. A
// failed write is retried; one that fails every time (or the node closing)
// makes every delivery due, counted by this node's memory alone: a receipt
// sent twice is harmless, one never sent is not.
func (a *acks) recordDeliveries(ds []storage.Delivery) ([]storage.Delivery, map[string]int) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StoreTimeout)
		firsts, counts, err := a.store.RecordDeliveries(ctx, ds)
		cancel()
		if errors.Is(err, storage.ErrInvalid) {
			// The others are recorded and answered for. (None is dropped in
			// practice: the ids are of stored entries, the users signed in.)
			a.log.Warn("record deliveries", "error", err)
			err = nil
		}
		switch {
		case err == nil && attempt > 1:
			// The failed attempt may have recorded some and lost the
			// answer: they are no firsts now, yet nobody reported them.
			return ds, counts
		case err == nil:
			return firsts, counts
		case attempt == recordAttempts || a.w.closed.Load():
			a.metrics.ReceiptFallback.Add(float64(len(ds)))
			a.log.Warn("record deliveries failed: receipts sent from this node's memory", "deliveries", len(ds),
				"attempts", attempt, "error", err)
			return ds, nil
		}
		select {
		case <-time.After(time.Duration(attempt) * receiptBackoff):
		case <-a.w.quit:
			return ds, nil
		}
	}
}

func (a *acks) storeReceipt(m storage.Message) {
	var es []protocol.Entry
	var err error
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StoreTimeout)
		es, _, err = a.store.Append(ctx, m)
		cancel()
		if err == nil || attempt == 5 || a.w.closed.Load() {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if err != nil {
		a.log.Warn("store receipt", "to", m.To, "by", m.From, "error", err)
		return
	}
	a.metrics.Receipts.Inc()
	a.deliver(es[0], 1)
}
