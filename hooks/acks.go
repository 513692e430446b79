package hooks

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// ackStore is what acknowledgements write: devices' cursors, who has which
// message (DeliveryStore), and the receipts, which are entries.
type ackStore interface {
	Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error)
	SaveCursors(ctx context.Context, cs []storage.Cursor) error
	DeliveryStore
}

// acks turns devices' acknowledgements into what follows from them: the
// device's cursor moves (written in batches: cursors.go), and the sender of
// a message its recipient acknowledged gets a delivered receipt
// (receipts.go), as do the senders of what a reader marks read.
//
// It learns which entry an acknowledgement is for from session.inflight,
// filled by mochi's fan-out (sent) and by catch-up (sendDirect).
type acks struct {
	cfg      *InboxConfig
	log      *slog.Logger
	store    ackStore
	metrics  *Metrics
	now      func() time.Time
	w        *workers
	members  *members
	isAdmin  func(string) bool
	deliver  func(e protocol.Entry, qos byte) // receipts are entries: stored, then delivered like any other
	receipts chan ackEvent

	cursorMu sync.Mutex // guards dirty
	dirty    map[cursorKey]int64
}

type cursorKey struct{ client, inbox string }

type ackEvent struct {
	to, by, inbox, id string // receipt goes to u/{to}: by acknowledged id, stored in inbox
	seq               int64
}

func newAcks(cfg *InboxConfig, store ackStore, m *Metrics, w *workers, mem *members, isAdmin func(string) bool, log *slog.Logger) *acks {
	return &acks{cfg: cfg, log: log, store: store, metrics: m, now: time.Now, w: w, members: mem, isAdmin: isAdmin,
		receipts: make(chan ackEvent, 1<<16), dirty: map[cursorKey]int64{}}
}

// start runs the receipt and cursor workers until the workers stop.
func (a *acks) start() {
	a.w.run(a.runReceipts)
	a.w.run(a.runCursors)
}

// sent remembers which entry an outbound packet id of mochi's fan-out
// carries, so that its PUBACK can move the device's cursor and produce a
// receipt.
func (a *acks) sent(cl *mqtt.Client, sess *session, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || !isInboxTopic(pk.TopicName) {
		return
	}
	hd, ok := protocol.PeekHeader(pk.Payload)
	if !ok || hd.Seq == 0 {
		return
	}
	sess.mu.Lock()
	if sess.cl == cl {
		sess.inflight[pk.PacketID] = hd
	}
	sess.mu.Unlock()
}

// dropped forgets a delivery mochi gave up on.
func (a *acks) dropped(sess *session, pid uint16) {
	sess.mu.Lock()
	delete(sess.inflight, pid)
	sess.mu.Unlock()
}

// acked handles a device's PUBACK of packet id pid: the device's cursor
// moves, and the first acknowledgement of a message by its recipient
// queues a delivered receipt for the sender. Runs on the device's read
// goroutine; never blocks.
func (a *acks) acked(sess *session, pid uint16) {
	sess.mu.Lock()
	hd, ok := sess.inflight[pid]
	if ok {
		delete(sess.inflight, pid)
		close(sess.ackWait)
		sess.ackWait = make(chan struct{})
	}
	var moved bool
	var at int64
	if ok && sess.persistent {
		if wm := sess.cursors[hd.Inbox]; wm != nil && wm.ack(hd.Seq) {
			moved, at = true, wm.w
		}
	}
	sess.mu.Unlock()
	if !ok {
		return
	}
	a.metrics.Acked.Inc()
	if moved {
		a.setCursor(sess.id, hd.Inbox, at)
	}
	if hd.Type != protocol.TypeMsg || hd.From == sess.user {
		return
	}
	if a.cfg.OnDelivered != nil {
		a.cfg.OnDelivered(sess.user, hd.Inbox, hd.ID)
	}
	if hd.Inbox == protocol.UserInbox(sess.user) || strings.HasPrefix(hd.Inbox, protocol.GroupPrefix) {
		select {
		case a.receipts <- ackEvent{to: hd.From, by: sess.user, inbox: hd.Inbox, id: hd.ID, seq: hd.Seq}:
		default:
			a.metrics.ReceiptsLost.Inc()
		}
	}
}

// setCursor records that client's cursor on inbox is at seq, for the next
// flush.
func (a *acks) setCursor(client, inbox string, seq int64) {
	a.cursorMu.Lock()
	a.dirty[cursorKey{client, inbox}] = seq
	a.cursorMu.Unlock()
}

// lowerCursor records client's cursor on inbox at seq unless a lower one is
// waiting for the flush.
func (a *acks) lowerCursor(client, inbox string, seq int64) {
	a.cursorMu.Lock()
	if cur, ok := a.dirty[cursorKey{client, inbox}]; !ok || cur > seq {
		a.dirty[cursorKey{client, inbox}] = seq
	}
	a.cursorMu.Unlock()
}
