package hooks

import (
	"context"
	"strings"

	"github.com/google/uuid"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// ReadStore is what read markers need from storage.
type ReadStore interface {
	SetReadCursor(ctx context.Context, c storage.ReadCursor) (int64, error)
	Unread(ctx context.Context, reader, inbox, conv string, after, upTo int64, limit int) ([]protocol.Entry, error)
	CountReaders(ctx context.Context, inbox string, seq int64, except string) (int, error)
}

// maxReceiptIDs bounds the ids of one read receipt; a reader catching up on
// more messages sends several markers' worth of receipts, or the senders
// see the newest ones.
const maxReceiptIDs = 500

// publishRead handles a read marker: {"type":"read","seq":N} published to
// the reader's own inbox (optionally "with" one conversation) or to a group
// it belongs to. The cursor is stored before the PUBACK; the reader's other
// devices get a read entry in its inbox, and the senders of the newly read
// messages a read receipt.
func (p *publisher) publishRead(cl *mqtt.Client, sess *session, pk packets.Packet, t protocol.Topic, sub protocol.Submission) (packets.Packet, error) {
	rs, ok := p.store.(ReadStore)
	if !ok {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeBadPayload, Detail: "read markers are not supported by this store"})
	}
	inbox := t.String()
	if sub.Inbox != "" && sub.Inbox != inbox {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeBadPayload, Detail: "a read marker goes to the inbox it marks"})
	}
	if t.Kind == protocol.KindUser && t.ID != sess.user {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "read markers go to your own inbox or a group"})
	}
	conv := ""
	if t.Kind == protocol.KindUser {
		conv = sub.With
	}
	// A marker beyond the inbox's last entry would read as "read" every
	// message stored later, and tell their senders so before anyone saw
	// them: it is clamped to the last seq.
	seq := sub.Seq
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StoreTimeout)
	last, err := p.store.LastSeq(ctx, inbox)
	if err == nil && seq > last {
		seq = last
	}
	var prev int64
	if err == nil {
		prev, err = rs.SetReadCursor(ctx, storage.ReadCursor{User: sess.user, Inbox: inbox, Conv: conv, Seq: seq})
	}
	cancel()
	if err != nil {
		p.log.Warn("store read cursor", "client", cl.ID, "error", err)
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeUnavailable})
	}
	if seq <= prev {
		return pk, packets.CodeSuccessIgnore // already read that far
	}
	// The reader's other devices learn it through the reader's own inbox.
	echoConv := conv
	if t.Kind == protocol.KindGroup {
		echoConv = inbox
	}
	ctx, cancel = context.WithTimeout(context.Background(), p.cfg.StoreTimeout)
	es, _, err := p.store.Append(ctx, storage.Message{ID: uuid.Must(uuid.NewV7()).String(), From: sess.user, To: sess.user,
		TS: p.now().UnixMilli(), Type: protocol.TypeRead, Data: protocol.ReadData(inbox, conv, seq),
		Inboxes: []string{protocol.UserInbox(sess.user)}, Conv: echoConv})
	cancel()
	if err != nil {
		p.log.Warn("store read entry", "client", cl.ID, "error", err)
	} else {
		sess.pending = append(sess.pending, es[0])
		sess.pendingQoS = 1
	}
	p.w.run(func() { p.acks.readReceipts(rs, sess.user, inbox, conv, prev, seq) })
	return pk, packets.CodeSuccessIgnore
}

// readReceipts tells the senders of the messages in (prev, seq] of inbox
// that reader has read them: one receipt per sender; for a group, with how
// many of the other members have read that far. A group member reads from
// its join: the messages from before are not its to have read.
func (a *acks) readReceipts(rs ReadStore, reader, inbox, conv string, prev, seq int64) {
	if strings.HasPrefix(inbox, protocol.GroupPrefix) {
		if from, ok := a.members.member(inbox[len(protocol.GroupPrefix):], reader); ok && from > 0 {
			prev = max(prev, from-1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StoreTimeout)
	defer cancel()
	msgs, err := rs.Unread(ctx, reader, inbox, conv, prev, seq, maxReceiptIDs)
	if err != nil {
		a.log.Warn("read receipts", "reader", reader, "inbox", inbox, "error", err)
		return
	}
	ids := map[string][]string{}
	top := map[string]int64{}
	var senders []string
	for _, e := range msgs {
		if e.From == "" || a.isAdmin(e.From) {
			continue
		}
		if _, ok := ids[e.From]; !ok {
			senders = append(senders, e.From)
		}
		ids[e.From] = append(ids[e.From], e.ID)
		top[e.From] = max(top[e.From], e.Seq)
	}
	group := strings.HasPrefix(inbox, protocol.GroupPrefix)
	for _, sender := range senders {
		m := storage.Message{ID: uuid.Must(uuid.NewV7()).String(), From: reader, To: sender, TS: a.now().UnixMilli(),
			Type: protocol.TypeReceipt, Data: protocol.ReceiptData("read", reader, inbox, ids[sender]),
			Inboxes: []string{protocol.UserInbox(sender)}}
		if group {
			n, err := rs.CountReaders(ctx, inbox, top[sender], sender)
			if err != nil {
				a.log.Warn("read receipts", "inbox", inbox, "error", err)
				continue
			}
			of := a.members.count(inbox[len(protocol.GroupPrefix):]) - 1
			m.From, m.Conv = "", inbox
			m.Data = protocol.GroupReceiptData("read", inbox, ids[sender], n, max(of, n))
		}
		a.storeReceipt(m)
	}
}
