package hooks

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// phase is where an entry's commit or fan-out falls relative to a device's
// catch-up on the entry's inbox.
type phase int

const (
	phaseBefore  phase = iota // before the device subscribes: no gate
	phaseStart                // the catch-up began; its starting point is not read
	phaseStarted              // the starting point is read; no entry is
	phaseRead                 // the first batch is read and sent; going live is not decided
	phaseLive                 // the catch-up went live
	phases
)

func (p phase) String() string {
	return [...]string{"before", "start", "started", "read", "live"}[p]
}

// TestHandoverInterleavings drives the catch-up → live hand-over through
// every interleaving of one entry's commit and fan-out with the steps of a
// device's catch-up on the same inbox, deterministically: the catch-up
// stops at each step (fanout.step) while the test commits and fans out the
// entry on the catch-up's own goroutine, so each case runs one exact
// schedule. Whatever the schedule, the device gets every entry it is owed
// exactly once, in order:
//
//   - a returning device (a cursor in the store) gets everything after its
//     cursor;
//   - a device new to the inbox starts at its end, and gets every entry
//     that was not both committed and fanned out before it subscribed
//     (README.md, hand-over step 5).
//
// A last entry sent after the catch-up went live shows that nothing else
// is on its way: the connection carries deliveries in the order they were
// made.
func TestHandoverInterleavings(t *testing.T) {
	for _, returning := range []bool{true, false} {
		for c := phaseBefore; c < phases; c++ {
			for f := c; f < phases; f++ {
				kind := "new"
				if returning {
					kind = "returning"
				}
				t.Run(fmt.Sprintf("%s/commit_%s/fanout_%s", kind, c, f), func(t *testing.T) {
					testHandover(t, returning, c, f)
				})
			}
		}
	}
}

func testHandover(t *testing.T, returning bool, commitAt, fanoutAt phase) {
	const inbox = "u/bob"
	var (
		mu   sync.Mutex
		done [phases]bool
		x    protocol.Entry
		n    *testNode
	)
	// at does what the schedule puts at phase p: the entry's commit, its
	// fan-out, or both (in that order). Each phase happens once.
	at := func(p phase) {
		mu.Lock() // also orders x between the test's goroutine and the catch-up's
		defer mu.Unlock()
		if done[p] {
			return
		}
		done[p] = true
		if commitAt == p {
			x = n.commit("alice", "bob", "x")
		}
		if fanoutAt == p {
			n.inbox.fan.deliver(x, 1)
		}
	}
	n = startNode(t, InboxConfig{}, []string{"alice", "bob"}, func(h *Inbox) {
		h.fan.step = func(g *gate, s catchupStep) {
			if g.inbox != inbox {
				return
			}
			switch s {
			case stepStart:
				at(phaseStart)
			case stepStarted:
				at(phaseStarted)
			case stepRead:
				at(phaseRead)
			case stepLive:
				at(phaseLive)
			}
		}
	})
	// History: seqs 1 and 2, delivered while nobody listened.
	for _, text := range []string{"h1", "h2"} {
		n.inbox.fan.deliver(n.commit("alice", "bob", text), 1)
	}
	if returning {
		must(t, n.store.SaveCursors(context.Background(), []storage.Cursor{{ClientID: "bob-phone", Inbox: inbox, Seq: 1}}), "save cursor")
	}
	at(phaseBefore)

	d := n.connect("bob", "bob-phone", true)
	if rc := d.subscribe(t, inbox); rc >= 0x80 {
		t.Fatalf("SUBACK %#x", rc)
	}
	testwait.Until(t, 5*time.Second, "catch-up live", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done[phaseLive]
	})
	last := n.commit("alice", "bob", "last")
	n.inbox.fan.deliver(last, 1)
	d.waitFor(t, inbox, last.Seq)

	mu.Lock()
	defer mu.Unlock()
	var want []int64
	switch {
	case returning:
		want = []int64{2, x.Seq, last.Seq}
	case commitAt == phaseBefore && fanoutAt == phaseBefore:
		want = []int64{last.Seq} // history to a new device
	default:
		want = []int64{x.Seq, last.Seq}
	}
	if got := d.seqs(inbox, protocol.TypeMsg); !slices.Equal(got, want) {
		t.Fatalf("device got seqs %v, want %v (entry %d committed %s, fanned out %s)", got, want, x.Seq, commitAt, fanoutAt)
	}
}

// TestNewDeviceLeavesBeforeCatchup: a device new to an inbox subscribes
// and leaves before its catch-up has run (a busy node); a message is stored
// meanwhile. Its starting point is where the inbox ended when the
// subscription was granted, not where it ends when the catch-up gets to
// read it: back, the device gets the message. (Read late, the starting
// point counted the message as history: CI's TestPushReconnectInGrace.)
func TestNewDeviceLeavesBeforeCatchup(t *testing.T) {
	var (
		n      *testNode
		d      *testDevice
		x      protocol.Entry
		once   sync.Once
		subAck = make(chan struct{})
		done   = make(chan struct{})
	)
	n = startNode(t, InboxConfig{}, []string{"alice", "bob"}, func(h *Inbox) {
		h.fan.step = func(g *gate, s catchupStep) {
			if g.inbox != "u/bob" {
				return
			}
			if s == stepStarted && x.Seq > 0 {
				// Its fan-out comes while the gate still holds deliveries
				// back, after the starting point was read.
				n.inbox.fan.deliver(x, 1)
				return
			}
			if s != stepStart {
				return
			}
			once.Do(func() {
				<-subAck
				d.conn.Close()
				testwait.Until(t, 5*time.Second, "the server to see the device gone", g.cl.Closed)
				x = n.commit("alice", "bob", "while away")
				close(done)
			})
		}
	})
	d = n.connect("bob", "bob-phone", true)
	if rc := d.subscribe(t, "u/bob"); rc >= 0x80 {
		t.Fatalf("SUBACK %#x", rc)
	}
	close(subAck)
	<-done
	back := n.connect("bob", "bob-phone", true)
	back.waitFor(t, "u/bob", x.Seq)
}

// TestNewDeviceBackBeforeCatchup: as above, but the device is back before
// its first catch-up has even begun: the resumed subscription's catch-up
// starts where the inbox ended at the first SUBACK, not at its end now.
func TestNewDeviceBackBeforeCatchup(t *testing.T) {
	var (
		n       *testNode
		mu      sync.Mutex
		first   *gate
		release = make(chan struct{})
	)
	n = startNode(t, InboxConfig{}, []string{"alice", "bob"}, func(h *Inbox) {
		h.fan.step = func(g *gate, s catchupStep) {
			if g.inbox != "u/bob" || s != stepStart {
				return
			}
			mu.Lock()
			if first == nil {
				first = g
			}
			held := first == g
			mu.Unlock()
			if held {
				<-release // the first catch-up waits for a worker until the end
			}
		}
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	d := n.connect("bob", "bob-phone", true)
	if rc := d.subscribe(t, "u/bob"); rc >= 0x80 {
		t.Fatalf("SUBACK %#x", rc)
	}
	d.conn.Close()
	testwait.Until(t, 5*time.Second, "the first catch-up to be held", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil && first.cl.Closed()
	})
	x := n.commit("alice", "bob", "while away")
	n.inbox.fan.deliver(x, 1)
	back := n.connect("bob", "bob-phone", true)
	back.waitFor(t, "u/bob", x.Seq)
	close(release)
}
