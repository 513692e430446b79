package loadtest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/parleychat/parley/loadtest/account"
	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/report"
	"github.com/parleychat/parley/protocol"
)

// fakeInboxes plays Parley's part in a DM exchange: it stamps entries with a
// gapless seq per inbox, as the server does, and returns what each user's
// connection would receive.
type fakeInboxes struct {
	seq map[string]int64
	out map[int][]fakeDelivery // by receiving user
}

type fakeDelivery struct {
	what    string // "msg a0→b", for perturbations
	payload []byte
}

func (f *fakeInboxes) stamp(to int, user, what string, e protocol.Entry) {
	e.Inbox = protocol.UserInbox(user)
	f.seq[e.Inbox]++
	e.Seq = f.seq[e.Inbox]
	e.TS = time.Now().UnixMilli()
	f.out[to] = append(f.out[to], fakeDelivery{what: what, payload: e.AppendJSON(nil)})
}

// dm delivers the message sender→peer: recipient's copy, sender's copy, and
// the delivered receipt.
func (f *fakeInboxes) dm(users []string, run string, sender, peer int, seq int64, due time.Time) {
	payload := appendParleyPayload(nil, parleyCid(run, sender, seq), due, 100)
	sub, err := protocol.ParseSubmission(payload)
	if err != nil {
		panic(err)
	}
	id := fmt.Sprintf("id-%d-%d", sender, seq)
	e := protocol.Entry{ID: id, From: users[sender], To: users[peer], Type: protocol.TypeMsg, Cid: sub.Cid, Data: sub.Body}
	name := fmt.Sprintf("%d.%d", sender, seq)
	f.stamp(peer, users[peer], "msg "+name, e)
	f.stamp(sender, users[sender], "copy "+name, e)
	f.stamp(sender, users[sender], "receipt "+name, protocol.Entry{
		ID: "r-" + id, From: users[peer], To: users[sender], Type: protocol.TypeReceipt,
		Data: protocol.ReceiptData("delivered", users[peer], protocol.UserInbox(users[peer]), []string{id}),
	})
}

func TestLedgerDM(t *testing.T) {
	const run = "tst001"
	users := []string{"lt-a", "lt-b", "lt-c"}
	due := time.Now().Add(-time.Millisecond)
	// Messages: 0→1 seq 0..4, 1→2 seq 0..2, 2→0 seq 0.
	type msg struct{ s, peer, seq int }
	var msgs []msg
	for q := range 5 {
		msgs = append(msgs, msg{0, 1, q})
	}
	for q := range 3 {
		msgs = append(msgs, msg{1, 2, q})
	}
	msgs = append(msgs, msg{2, 0, 0})

	tests := map[string]struct {
		perturb func(map[int][]fakeDelivery) map[int][]fakeDelivery
		check   func(t *testing.T, rep *report.Report)
	}{
		"clean": {
			check: func(t *testing.T, rep *report.Report) {
				want := account.Result{Accepted: 9, Expected: 9, Delivered: 9}
				if !reflect.DeepEqual(*rep.Accounting, want) {
					t.Errorf("accounting = %+v", *rep.Accounting)
				}
				if *rep.Inboxes != (account.SeqResult{Streams: 3, Entries: 27}) {
					t.Errorf("inboxes = %+v", *rep.Inboxes)
				}
				if *rep.Receipts != (report.Receipts{Expected: 9, Received: 9}) {
					t.Errorf("receipts = %+v", *rep.Receipts)
				}
				if len(rep.Warnings) > 0 {
					t.Errorf("warnings: %v", rep.Warnings)
				}
			},
		},
		"injected loss": {
			perturb: func(d map[int][]fakeDelivery) map[int][]fakeDelivery {
				d[1] = remove(d[1], "msg 0.3")
				return d
			},
			check: func(t *testing.T, rep *report.Report) {
				a := rep.Accounting
				if a.Lost != 1 || a.Delivered != 8 || len(a.LostSamples) != 1 || a.LostSamples[0] != (account.Loss{Sender: 0, Seq: 3, Receiver: 1}) {
					t.Errorf("accounting = %+v", *a)
				}
				if rep.Inboxes.Gaps != 1 {
					t.Errorf("inboxes = %+v, want 1 gap", *rep.Inboxes)
				}
				// The lost message earns no receipt, and none is owed.
				if *rep.Receipts != (report.Receipts{Expected: 8, Received: 8}) {
					t.Errorf("receipts = %+v", *rep.Receipts)
				}
				if rep.Lost() != 1 {
					t.Errorf("Lost() = %d", rep.Lost())
				}
			},
		},
		"injected duplicate": {
			perturb: func(d map[int][]fakeDelivery) map[int][]fakeDelivery {
				for _, x := range d[1] {
					if x.what == "msg 0.1" {
						d[1] = append(d[1], x)
					}
				}
				return d
			},
			check: func(t *testing.T, rep *report.Report) {
				if a := rep.Accounting; a.Duplicates != 1 || a.Lost != 0 || a.Delivered != 9 {
					t.Errorf("accounting = %+v", *a)
				}
				if in := rep.Inboxes; in.Dups != 1 || in.Gaps != 0 {
					t.Errorf("inboxes = %+v", *in)
				}
			},
		},
		"injected reordering": {
			perturb: func(d map[int][]fakeDelivery) map[int][]fakeDelivery {
				d[2] = swap(d[2], "msg 1.1", "msg 1.2")
				return d
			},
			check: func(t *testing.T, rep *report.Report) {
				if a := rep.Accounting; a.Reordered != 1 || a.Lost != 0 {
					t.Errorf("accounting = %+v", *a)
				}
				if in := rep.Inboxes; in.Reordered != 1 || in.Gaps != 0 || in.Dups != 0 {
					t.Errorf("inboxes = %+v", *in)
				}
			},
		},
		"lost sender copy and receipt": {
			perturb: func(d map[int][]fakeDelivery) map[int][]fakeDelivery {
				d[0] = remove(d[0], "receipt 0.0")
				d[1] = remove(d[1], "copy 1.2") // also loses its receipt: the id is unknown
				return d
			},
			check: func(t *testing.T, rep *report.Report) {
				if rep.Accounting.Lost != 0 {
					t.Errorf("accounting = %+v", *rep.Accounting)
				}
				if *rep.Receipts != (report.Receipts{Expected: 9, Received: 7}) {
					t.Errorf("receipts = %+v", *rep.Receipts)
				}
				if len(rep.Warnings) != 1 || rep.Inboxes.Gaps != 2 {
					t.Errorf("warnings %v, inboxes %+v", rep.Warnings, *rep.Inboxes)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := newMeter()
			l := newLedger(run, m, users, 8, false, func(_, dest int32, fn func(int)) { fn(int(dest)) })
			f := &fakeInboxes{seq: map[string]int64{}, out: map[int][]fakeDelivery{}}
			for _, x := range msgs {
				l.logs[x.s].Sending(int64(x.seq), int32(x.peer))
				l.logs[x.s].Set(int64(x.seq), account.StatusAccepted)
				f.dm(users, run, x.s, x.peer, int64(x.seq), due)
			}
			out := f.out
			if tc.perturb != nil {
				out = tc.perturb(out)
			}
			for u, ds := range out {
				for _, d := range ds {
					l.receive(u, mqttclient.Message{Topic: protocol.UserInbox(users[u]), Payload: d.payload, Received: time.Now()})
				}
			}
			rep := &report.Report{}
			l.reconcile(rep)
			tc.check(t, rep)
		})
	}
}

func remove(ds []fakeDelivery, what string) []fakeDelivery {
	var out []fakeDelivery
	for _, d := range ds {
		if d.what != what {
			out = append(out, d)
		}
	}
	return out
}

func swap(ds []fakeDelivery, a, b string) []fakeDelivery {
	i, j := -1, -1
	for k, d := range ds {
		switch d.what {
		case a:
			i = k
		case b:
			j = k
		}
	}
	ds[i], ds[j] = ds[j], ds[i]
	return ds
}

func TestPayloads(t *testing.T) {
	due := time.Unix(1_764_250_000, 123456789)
	raw := appendRaw(nil, rawHeader{run: 7, publisher: 3, seq: 42, due: due}, 64)
	if h, ok := parseRaw(raw); !ok || len(raw) != 64 || h.run != 7 || h.publisher != 3 || h.seq != 42 || !h.due.Equal(due) {
		t.Errorf("raw round trip: %+v %v (%d bytes)", h, ok, len(raw))
	}
	if _, ok := parseRaw([]byte("hello")); ok {
		t.Error("parseRaw accepted a foreign payload")
	}
	cid := parleyCid("abc123", 17, 99)
	p := appendParleyPayload(nil, cid, due, 100)
	if len(p) != 100 || !json.Valid(p) {
		t.Fatalf("payload %q (%d bytes)", p, len(p))
	}
	sub, err := protocol.ParseSubmission(p)
	if err != nil || sub.Cid != cid {
		t.Fatalf("ParseSubmission: %+v, %v", sub, err)
	}
	if s, q, ok := parseCid(cid, "abc123"); !ok || s != 17 || q != 99 {
		t.Errorf("parseCid = %d %d %v", s, q, ok)
	}
	if _, _, ok := parseCid(cid, "other1"); ok {
		t.Error("parseCid accepted another run's cid")
	}
	if len(parleyCid("abcdef", 999999, 1<<40)) > protocol.MaxCidLen {
		t.Error("cid too long")
	}
}
