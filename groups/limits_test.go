package groups

import (
	"errors"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(Limits{CreateRate: 60, CreateBurst: 2, AddRate: 3600, AddBurst: 5})
	now := time.Unix(1_700_000_000, 0)
	for i := range 2 {
		if err := l.take("alice", true, 1, now); err != nil {
			t.Fatalf("create %d: %v", i+1, err)
		}
	}
	err := l.take("alice", true, 1, now)
	var limited *RateLimitedError
	if !errors.As(err, &limited) || !errors.Is(err, ErrRateLimited) || limited.What != "groups created" || limited.Wait != time.Minute {
		t.Fatalf("third create: %v (%+v), want groups created limited for 1m", err, limited)
	}
	if err := l.take("bob", true, 1, now); err != nil {
		t.Fatalf("another user's create: %v", err)
	}
	// A refused create spends nothing: the add bucket still holds 3.
	if err := l.take("alice", false, 3, now); err != nil {
		t.Fatalf("3 adds: %v", err)
	}
	if err := l.take("alice", false, 1, now); !errors.As(err, &limited) || limited.What != "members added" || limited.Wait != time.Second {
		t.Fatalf("a 6th add: %v, want members added limited for 1s", err)
	}
	// A create whose members do not fit spends no create either.
	now = now.Add(time.Minute) // one create back, and the adds full again
	if err := l.take("alice", false, 5, now); err != nil {
		t.Fatal(err)
	}
	if err := l.take("alice", true, 1, now); !errors.As(err, &limited) || limited.What != "members added" {
		t.Fatalf("a create with a member over the add limit: %v", err)
	}
	if err := l.take("alice", true, 0, now); err != nil {
		t.Fatalf("the create refused with its member was spent: %v", err)
	}
	if err := l.take("carol", true, 6, now); !errors.Is(err, ErrTooManyMembers) {
		t.Fatalf("more adds than the burst: %v, want ErrTooManyMembers", err)
	}
	// Buckets that have refilled are dropped: bob's, a minute after his
	// one create.
	if len(l.create.users) != 1 || len(l.add.users) != 1 {
		t.Fatalf("buckets: %d create, %d add; want alice's", len(l.create.users), len(l.add.users))
	}
	l.take("dave", false, 1, now.Add(time.Hour))
	if len(l.create.users) != 0 || len(l.add.users) != 1 {
		t.Fatalf("after an hour: %d create buckets, %d add buckets; want 0 and dave's", len(l.create.users), len(l.add.users))
	}

	// A negative rate is no limit, and keeps no bucket.
	free := newLimiter(Limits{CreateRate: -1, AddRate: -1, AddBurst: 1})
	for range 100 {
		if err := free.take("alice", true, 10, now); err != nil {
			t.Fatal(err)
		}
	}
	if len(free.create.users)+len(free.add.users) != 0 {
		t.Fatal("buckets kept without a limit")
	}
}
