package loadtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/loadtest/account"
	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/parleyapi"
	"github.com/parleychat/parley/loadtest/report"
	"github.com/parleychat/parley/protocol"
)

// Provisioner is what the Parley workloads need from Parley's HTTP API: users
// with tokens, and groups. *parleyapi.Client implements it; tests fake it.
type Provisioner interface {
	Provision(ctx context.Context, users []parleyapi.User) ([]parleyapi.Credential, error)
	CreateGroups(ctx context.Context, groups []parleyapi.Group) (ids []string, err error)
}

// api returns the configured Provisioner, or a client of Parley's HTTP API:
// of the one node given, or of all of them at once (apis).
func (r *run) api() Provisioner {
	if r.cfg.Provisioner != nil {
		return r.cfg.Provisioner
	}
	client := func(base string) *parleyapi.Client {
		c := &parleyapi.Client{Base: base}
		if r.cfg.Admin != "" {
			c.AdminUser, c.AdminPassword, _ = strings.Cut(r.cfg.Admin, ":")
		}
		return c
	}
	if len(r.cfg.HTTP) == 1 {
		return client(r.cfg.HTTP[0])
	}
	a := make(apis, len(r.cfg.HTTP))
	for k, base := range r.cfg.HTTP {
		a[k] = nodeAPI{Provisioner: client(base), base: base}
	}
	return a
}

// userID returns the id of user i of the run.
func (r *run) userID(i int) string { return fmt.Sprintf("%s%d", r.cfg.UserPrefix, i) }

// provision creates n users (or refreshes their tokens) and returns their
// credentials by index.
func (r *run) provision(ctx context.Context, n int) ([]parleyapi.Credential, error) {
	users := make([]parleyapi.User, n)
	for i := range users {
		id := r.userID(i)
		if !protocol.ValidID(id) {
			return nil, fmt.Errorf("provision users: %q is not a valid user id (lower-case letters, digits, _ . -; at most %d)", id, protocol.MaxIDLen)
		}
		users[i] = parleyapi.User{ID: id, Password: r.cfg.UserPassword, Name: "Load test " + id}
	}
	start := time.Now()
	creds, err := r.api().Provision(ctx, users)
	if err != nil {
		return nil, err
	}
	r.log.Info("users provisioned", "users", n, "elapsed", time.Since(start).Round(time.Millisecond))
	return creds, nil
}

// ledger accounts for a Parley workload: DMs or group messages. Receivers are
// users by index; senders are users too. A message is sent by user s with
// sequence number seq to dest (a peer for dm, a group for group).
type ledger struct {
	run     string // cid tag
	m       *meter
	users   []string       // id by index
	index   map[string]int // index by id
	logs    []*account.SendLog
	inboxes []*account.SeqTracker // per receiver

	// deliveries checks the copies that reach receivers other than the
	// sender; copies the sender's own copies (dm: u/{sender}; group: the
	// sender's copy from g/{group}); receipts the "delivered" receipts (group:
	// the first receipt that counts every other member).
	deliveries, copies, receipts *account.Checklist
	// members returns the receivers that must get a message: dm: the peer;
	// group: every member but the sender.
	members func(sender, dest int32, fn func(int))
	// group says whether messages go to groups (their copies arrive through
	// the group's inbox) rather than to users.
	group bool
	// nodes is the number of brokers the users are spread over (user i on
	// broker i mod nodes), for the same-node and cross-node latencies.
	nodes int

	refs []senderRefs // per sender: server message id → own message, for receipts
}

type senderRefs struct {
	mu     sync.Mutex // guards the fields below
	ids    map[string]msgRef
	counts map[int64]int // group: own seq → highest receipt count so far
}

type msgRef struct {
	seq int64
	due time.Time
}

func newLedger(run string, m *meter, users []string, perSender int, group bool, members func(sender, dest int32, fn func(int))) *ledger {
	l := &ledger{
		run: run, m: m, users: users, index: make(map[string]int, len(users)),
		logs: make([]*account.SendLog, len(users)), inboxes: make([]*account.SeqTracker, len(users)),
		deliveries: account.NewChecklist(len(users)), copies: account.NewChecklist(len(users)),
		receipts: account.NewChecklist(len(users)),
		members:  members, group: group, nodes: 1,
		refs: make([]senderRefs, len(users)),
	}
	for i, u := range users {
		l.index[u] = i
		l.logs[i] = account.NewSendLog(perSender)
		l.inboxes[i] = account.NewSeqTracker()
		l.refs[i].ids = make(map[string]msgRef)
		if group {
			l.refs[i].counts = make(map[int64]int)
		}
	}
	return l
}

// receive handles one entry delivered to user x. It runs on x's connection's
// delivery goroutine.
func (l *ledger) receive(x int, msg mqttclient.Message) {
	m := l.m
	m.arrived(msg.Received)
	h, ok := protocol.PeekHeader(msg.Payload)
	if !ok {
		m.fail("delivered payload is not an entry")
		return
	}
	if h.Seq > 0 {
		switch l.inboxes[x].Add(h.Inbox, h.Seq) {
		case account.ArrivalDuplicate:
			m.fail("inbox entry delivered twice (same seq)")
		case account.ArrivalReordered:
			m.fail("inbox entry out of order (seq)")
		}
	}
	f, err := parseEntryFields(msg.Payload)
	if err != nil {
		m.fail("delivered entry: " + errReason(err))
		return
	}
	switch h.Type {
	case protocol.TypeMsg:
		sender, seq, ok := parseCid(f.Cid, l.run)
		if !ok || sender >= len(l.users) || l.users[sender] != h.From {
			m.foreign.Add(1)
			return
		}
		due := time.Unix(0, f.Body.T)
		own := sender == x
		if own {
			if l.copies.Mark(x, int32(sender), seq) == account.ArrivalDuplicate {
				m.dups.Add(1)
				return
			}
			m.echo.Record(msg.Received.Sub(due))
			r := &l.refs[x]
			r.mu.Lock()
			r.ids[h.ID] = msgRef{seq: seq, due: due}
			r.mu.Unlock()
			return
		}
		if l.deliveries.Mark(x, int32(sender), seq) == account.ArrivalDuplicate {
			m.dups.Add(1)
			return
		}
		m.deliveryLatency(msg.Received.Sub(due), l.nodes, nodeOf(sender, l.nodes), nodeOf(x, l.nodes))
		m.delivered.Add(1)
	case protocol.TypeReceipt:
		if f.Status != "delivered" {
			return
		}
		if l.group {
			l.groupReceipt(x, f, msg.Received)
			return
		}
		r := &l.refs[x]
		for _, id := range f.IDs {
			r.mu.Lock()
			ref, ok := r.ids[id]
			r.mu.Unlock()
			if !ok {
				m.fail("receipt for an unknown message id")
				continue
			}
			if l.receipts.Mark(x, int32(x), ref.seq) == account.ArrivalDuplicate {
				m.fail("duplicate delivered receipt")
				continue
			}
			m.receipt.Record(msg.Received.Sub(ref.due))
		}
	case protocol.TypeError:
		m.fail(fmt.Sprintf("error entry: %s (0x%02x)", f.Reason, f.Code))
	}
}

// groupReceipt handles an aggregated group receipt in sender x's inbox: "count
// of the other members have these messages". Receipts for one message come
// again as more members acknowledge it; the first one that counts all of them
// completes the message (and gives the delivered receipt latency).
func (l *ledger) groupReceipt(x int, f entryFields, received time.Time) {
	m := l.m
	if f.Of <= 0 || f.Count > f.Of {
		m.fail(fmt.Sprintf("group receipt counts %d of %d", f.Count, f.Of))
		return
	}
	r := &l.refs[x]
	for _, id := range f.IDs {
		r.mu.Lock()
		ref, ok := r.ids[id]
		prev := r.counts[ref.seq]
		if ok && f.Count > prev {
			r.counts[ref.seq] = f.Count
		}
		r.mu.Unlock()
		// A count lower than one seen before is no error: receipts are
		// entries of the sender's inbox, and an out-of-order delivery there
		// is counted already.
		switch {
		case !ok:
			m.fail("receipt for an unknown message id")
		case f.Count == f.Of && prev == f.Of:
			m.fail("duplicate complete group receipt")
		case f.Count == f.Of:
			l.receipts.Mark(x, int32(x), ref.seq)
			m.receipt.Record(received.Sub(ref.due))
		}
	}
}

// reconcile fills the report's accounting: deliveries to other users (the
// main figure), own copies, receipts and inbox sequences.
func (l *ledger) reconcile(rep *report.Report) {
	res := account.Reconcile(l.logs, l.deliveries, l.members)
	rep.Accounting = &res
	own := account.Reconcile(l.logs, l.copies, func(sender, _ int32, fn func(int)) { fn(int(sender)) })
	var seqs account.SeqResult
	for _, t := range l.inboxes {
		seqs = seqs.Add(t.Result())
	}
	rep.Inboxes = &seqs
	if own.Lost > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("SENDER COPIES LOST: %d of %d accepted messages never came back to their sender's own inbox", own.Lost, own.Expected))
	}
	if own.Duplicates > 0 || own.Reordered > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("sender copies: %d duplicates, %d out of order", own.Duplicates, own.Reordered))
	}
	// A receipt is owed for every accepted message its recipients got (group:
	// all of them).
	var rc report.Receipts
	for s, log := range l.logs {
		for seq := range log.Len() {
			st, dest := log.Get(seq)
			if st != account.StatusAccepted {
				continue
			}
			got := true
			l.members(int32(s), dest, func(x int) { got = got && l.deliveries.Has(x, int32(s), seq) })
			if !got {
				continue
			}
			rc.Expected++
			switch {
			case l.receipts.Has(s, int32(s), seq):
				rc.Received++
			case l.group && l.refs[s].counts[seq] > 0:
				rc.Partial++
			}
		}
	}
	rep.Receipts = &rc
	if l.group && rc.Received < rc.Expected {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("GROUP RECEIPTS: %d of %d messages every member got were never reported delivered to all (%d of them partly)",
			rc.Expected-rc.Received, rc.Expected, rc.Partial))
	}
}

// parleyReason names a PUBACK reason code the way Parley documents it.
func parleyReason(code byte) string {
	switch c := protocol.Code(code); c {
	case protocol.CodeUnavailable, protocol.CodeNotAuthorized, protocol.CodeNoInbox, protocol.CodeTooLarge,
		protocol.CodeRateLimited, protocol.CodeBadPayload:
		return c.Reason()
	}
	return mqttclient.ReasonName(code, false)
}
