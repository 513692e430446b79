package shard_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/shard"
)

// twoShards returns two prepared shards: alice's inbox on a, bob's on b.
func twoShards(t *testing.T) (a, b *postgres.Store, pa, pb *pgxpool.Pool) {
	t.Helper()
	pa, a = newShard(t)
	pb, b = newShard(t)
	if _, err := shard.Prepare(ctx(t), dbs(pa, pb)); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateUser(ctx(t), storage.User{ID: "alice", Name: "Alice", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateUser(ctx(t), storage.User{ID: "bob", Name: "Bob", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	return a, b, pa, pb
}

// dmAcross is alice's DM to bob as a sharded store appends it on bob's
// shard: bob's copy, and alice's owed.
func dmAcross(cid, text string) storage.Message {
	return storage.Message{ID: uuid.Must(uuid.NewV7()).String(), From: "alice", To: "bob", TS: time.Now().UnixMilli(),
		Type: protocol.TypeMsg, Cid: cid, Data: []byte(`{"text":"` + text + `"}`), Inboxes: []string{"u/bob"}, Owed: []string{"u/alice"}}
}

func relayOf(a, b *postgres.Store, delivered *[]protocol.Entry) *shard.Relay {
	return &shard.Relay{
		Outboxes: []shard.Outbox{a, b},
		Shard: func(inbox string) shard.Appender {
			if inbox == "u/alice" {
				return a
			}
			return b
		},
		Deliver: func(e protocol.Entry) { *delivered = append(*delivered, e) },
	}
}

func contactsOf(t *testing.T, p *pgxpool.Pool) [][2]string {
	t.Helper()
	rows, err := p.Query(ctx(t), "SELECT user_id, peer FROM contacts ORDER BY 1, 2")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var r [2]string
		if err := rows.Scan(&r[0], &r[1]); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestOwedCopyRelayed: a DM whose sender lives on another shard stores the
// recipient's copy and, in the same transaction, the sender's owed copy;
// the relay appends it to the sender's shard once, in order, with the
// sender's conversation row, and no push.
func TestOwedCopyRelayed(t *testing.T) {
	a, b, pa, pb := twoShards(t)
	var msgs []storage.Message
	for i, text := range []string{"one", "two", "three"} {
		m := dmAcross("c"+string(rune('1'+i)), text)
		es, dup, err := b.Append(ctx(t), m)
		if err != nil || dup || len(es) != 1 || es[0].Inbox != "u/bob" || es[0].Seq != int64(i+1) {
			t.Fatalf("append on bob's shard: %+v %v %v; want bob's copy only", es, dup, err)
		}
		msgs = append(msgs, m)
	}
	// A retry of the publish is a repeat: no second owed copy.
	if _, dup, err := b.Append(ctx(t), msgs[0]); err != nil || !dup {
		t.Fatalf("retry: dup %v, %v", dup, err)
	}
	if n, _, err := b.CountOwed(ctx(t)); err != nil || n != 3 {
		t.Fatalf("owed on bob's shard: %d, %v; want 3", n, err)
	}
	if es, _ := a.Read(ctx(t), "u/alice", 0, 10); len(es) != 0 {
		t.Fatalf("alice's copies before the relay: %+v", es)
	}
	var delivered []protocol.Entry
	r := relayOf(a, b, &delivered)
	if n, err := r.Once(ctx(t)); err != nil || n != 3 {
		t.Fatalf("relay: %d, %v; want 3", n, err)
	}
	es, err := a.Read(ctx(t), "u/alice", 0, 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("alice's copies: %+v, %v", es, err)
	}
	for i, e := range es {
		if e.ID != msgs[i].ID || e.Seq != int64(i+1) || e.From != "alice" || e.To != "bob" || e.Cid != msgs[i].Cid {
			t.Errorf("alice's copy %d: %+v; want message %s at seq %d", i, e, msgs[i].ID, i+1)
		}
	}
	if len(delivered) != 3 || delivered[2].ID != msgs[2].ID || delivered[2].Inbox != "u/alice" {
		t.Fatalf("delivered %+v", delivered)
	}
	if n, _, _ := b.CountOwed(ctx(t)); n != 0 {
		t.Fatalf("owed after the relay: %d", n)
	}
	// Each shard has its own user's conversation row, and only bob's
	// shard a push job.
	if got := contactsOf(t, pb); !slices.Equal(got, [][2]string{{"bob", "alice"}}) {
		t.Errorf("contacts on bob's shard: %v", got)
	}
	if got := contactsOf(t, pa); !slices.Equal(got, [][2]string{{"alice", "bob"}}) {
		t.Errorf("contacts on alice's shard: %v", got)
	}
	var jobsA, jobsB int
	pa.QueryRow(ctx(t), "SELECT count(*) FROM push_jobs").Scan(&jobsA)
	pb.QueryRow(ctx(t), "SELECT count(*) FROM push_jobs").Scan(&jobsB)
	if jobsA != 0 || jobsB != 3 {
		t.Errorf("push jobs: alice's shard %d, bob's %d; want 0 and 3", jobsA, jobsB)
	}
	// Nothing left: another round relays nothing.
	if n, err := r.Once(ctx(t)); err != nil || n != 0 {
		t.Fatalf("second relay: %d, %v", n, err)
	}
}

// TestOwedCopyOnce: a relay that appended a copy and died before deleting
// its outbox row is replaced once its lease runs out; the copy is found,
// not appended again, and not delivered again.
func TestOwedCopyOnce(t *testing.T) {
	a, b, _, _ := twoShards(t)
	m := dmAcross("c1", "hello")
	if _, _, err := b.Append(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	// The dead relay: it claimed with a lease that ends now, and appended.
	now := time.Now()
	cs, err := b.ClaimOwed(ctx(t), now, now, 10)
	if err != nil || len(cs) != 1 {
		t.Fatalf("claim: %+v, %v", cs, err)
	}
	first, dup, err := a.Append(ctx(t), cs[0].Message)
	if err != nil || dup {
		t.Fatalf("the dead relay's append: %v %v", dup, err)
	}
	// A live claim is refused while another runs.
	if more, err := b.ClaimOwed(ctx(t), now.Add(-time.Second), now.Add(time.Minute), 10); err != nil || len(more) != 0 {
		t.Fatalf("a claim during another's lease: %+v, %v; want none", more, err)
	}
	var delivered []protocol.Entry
	if n, err := relayOf(a, b, &delivered).Once(ctx(t)); err != nil || n != 1 {
		t.Fatalf("relay after the lease: %d, %v", n, err)
	}
	es, _ := a.Read(ctx(t), "u/alice", 0, 10)
	if len(es) != 1 || es[0].Seq != first[0].Seq || len(delivered) != 0 {
		t.Fatalf("alice's copies %+v, delivered %+v; want the one copy, not delivered again", es, delivered)
	}
	// Appending the same copy again answers it as a repeat.
	again, dup, err := a.Append(ctx(t), cs[0].Message)
	if err != nil || !dup || len(again) != 1 || again[0].Seq != first[0].Seq {
		t.Fatalf("copy again: %+v %v %v", again, dup, err)
	}
	// A copy's cid is not an idempotency key: alice's note to herself with
	// the same cid is a message of its own.
	note := storage.Message{ID: uuid.Must(uuid.NewV7()).String(), From: "alice", To: "alice", TS: time.Now().UnixMilli(),
		Type: protocol.TypeMsg, Cid: "c1", Data: []byte(`{}`), Inboxes: []string{"u/alice"}}
	if es, dup, err := a.Append(ctx(t), note); err != nil || dup || es[0].Seq != 2 {
		t.Fatalf("a note with the copy's cid: %+v %v %v", es, dup, err)
	}
}

// TestOwedCopyOfDeletedUser: a copy owed to an inbox that is gone is
// dropped, not retried for ever.
func TestOwedCopyOfDeletedUser(t *testing.T) {
	a, b, _, _ := twoShards(t)
	if _, _, err := b.Append(ctx(t), dmAcross("", "bye")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DeleteUser(ctx(t), "alice", time.Now()); err != nil {
		t.Fatal(err)
	}
	var delivered []protocol.Entry
	if n, err := relayOf(a, b, &delivered).Once(ctx(t)); err != nil || n != 1 {
		t.Fatalf("relay: %d, %v; want the copy dropped", n, err)
	}
	if n, _, _ := b.CountOwed(ctx(t)); n != 0 || len(delivered) != 0 {
		t.Fatalf("owed %d, delivered %+v", n, delivered)
	}
}
