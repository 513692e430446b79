package hooks

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestCheckTopic(t *testing.T) {
	tests := map[string]struct {
		topic string
		ok    bool
	}{
		"inbox":          {"u/alice", true},
		"at length":      {strings.Repeat("a", 256), true},
		"too long":       {strings.Repeat("a", 257), false},
		"8 levels":       {"a/b/c/d/e/f/g/h", true},
		"9 levels":       {"a/b/c/d/e/f/g/h/i", false},
		"empty levels":   {"////////", false},
		"empty (alias)":  {"", true},
		"65,535 levels":  {strings.Repeat("/", 65534), false},
		"wildcard depth": {"a/+/+/+/+/+/+/#", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			detail, ok := checkTopic(tc.topic, 256, 8)
			if ok != tc.ok || ok != (detail == "") {
				t.Fatalf("checkTopic = %q, %v; want ok %v", detail, ok, tc.ok)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	now := time.Unix(1000, 0)
	conn := rate.NewLimiter(10, 2) // 100ms a token
	user := rate.NewLimiter(1, 3)  // 1s a token
	for i := 0; i < 2; i++ {
		if d, ok := reserve(now, 0, conn, user); !ok || d != 0 {
			t.Fatalf("reserve %d within both bursts = %v, %v", i, d, ok)
		}
	}
	// The connection's burst is spent: without waiting, refused, and
	// nothing is taken from the user's bucket.
	if _, ok := reserve(now, 0, conn, user); ok {
		t.Fatal("reserve beyond the connection's burst succeeded without waiting")
	}
	if got := user.TokensAt(now); got != 1 {
		t.Fatalf("user tokens %v after a refused reservation, want 1 (nothing taken)", got)
	}
	// Waiting is allowed up to maxWait: the longer of the two waits counts.
	if d, ok := reserve(now, time.Second, conn, user); !ok || d != 100*time.Millisecond {
		t.Fatalf("reserve with a wait = %v, %v; want 100ms", d, ok)
	}
	// The user's bucket is empty now: the next waits 1s for it, over a
	// maxWait of 500ms.
	if _, ok := reserve(now, 500*time.Millisecond, conn, user); ok {
		t.Fatal("reserve over maxWait succeeded")
	}
	if d, ok := reserve(now, 2*time.Second, nil, user); !ok || d != time.Second {
		t.Fatalf("reserve on the user alone = %v, %v; want 1s", d, ok)
	}
	if d, ok := reserve(now, 0); !ok || d != 0 {
		t.Fatalf("reserve without limiters = %v, %v", d, ok)
	}
}

func TestStrikes(t *testing.T) {
	var s strikes
	now := time.Unix(1000, 0)
	for i := 1; i <= 3; i++ {
		if s.add(now, 3, 10*time.Second) {
			t.Fatalf("strike %d of 3 is over", i)
		}
	}
	if !s.add(now.Add(9*time.Second), 3, 10*time.Second) {
		t.Fatal("a 4th strike within the window is not over")
	}
	// A new window starts afresh.
	if s.add(now.Add(20*time.Second), 3, 10*time.Second) {
		t.Fatal("the first strike of a new window is over")
	}
}

func TestErrorBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	us := newUserStates(func() *userState {
		return &userState{errors: rate.NewLimiter(rate.Limit(3.0/60), 3), rate: rate.NewLimiter(10, 10)}
	})
	u := us.get("alice")
	for i := 0; i < 3; i++ {
		if n, ok := u.takeError(now); !ok || n != 0 {
			t.Fatalf("error entry %d: %d, %v", i, n, ok)
		}
	}
	for i := 0; i < 5; i++ {
		if _, ok := u.takeError(now); ok {
			t.Fatalf("error entry beyond the budget allowed")
		}
	}
	if us.prune(now) != 1 || us.get("alice") != u {
		t.Fatal("a spent state was forgotten")
	}
	// 20s later one entry is allowed again, counting the 5 dropped.
	if n, ok := u.takeError(now.Add(20 * time.Second)); !ok || n != 5 {
		t.Fatalf("entry after refill: suppressed %d, %v; want 5", n, ok)
	}
	if n, ok := u.takeError(now.Add(40 * time.Second)); !ok || n != 0 {
		t.Fatalf("next entry: suppressed %d, %v; want 0", n, ok)
	}
	if us.prune(now.Add(time.Hour)) != 0 {
		t.Fatal("a state full again was kept")
	}
	if us.get("alice") == u {
		t.Fatal("get after prune returned the forgotten state")
	}
}

func TestUserShare(t *testing.T) {
	const every = 2 * time.Second
	now := time.Unix(1000, 0)
	u := &userState{rate: rate.NewLimiter(1, 10)}
	if u.share() != 0 || !u.shareDue(now, every) {
		t.Fatal("a state never asked for its share is not due")
	}
	if u.shareDue(now.Add(time.Hour), every) {
		t.Fatal("due again while a refresh is under way")
	}
	u.rate.AllowN(now, 1) // a publish before the answer: 9 tokens left
	u.shareAnswered(now, 2, 1, 10)
	check := func(what string, nodes int, limit rate.Limit, burst int) {
		t.Helper()
		if u.share() != nodes || u.rate.Limit() != limit || u.rate.Burst() != burst {
			t.Fatalf("%s: share %d, limit %v, burst %d; want %d, %v, %d", what, u.share(), u.rate.Limit(), u.rate.Burst(),
				nodes, limit, burst)
		}
	}
	check("2 nodes", 2, 0.5, 5)
	if got := u.rate.TokensAt(now); got != 5 {
		t.Fatalf("%v tokens left after the split, want 5 (the new burst)", got)
	}
	if u.shareDue(now.Add(every-time.Millisecond), every) {
		t.Fatal("due before the refresh interval")
	}
	// No answer (NATS away): the last share stays, asked again an
	// interval later.
	if !u.shareDue(now.Add(every), every) {
		t.Fatal("not due after the refresh interval")
	}
	u.shareUnanswered()
	check("no answer", 2, 0.5, 5)
	if u.shareDue(now.Add(every+time.Second), every) || !u.shareDue(now.Add(2*every), every) {
		t.Fatal("an unanswered refresh is not asked again one interval later")
	}
	// Shares round the burst down, so that they never add up to more.
	u.shareAnswered(now, 3, 1, 10)
	check("3 nodes", 3, 1.0/3, 3)
	cases := map[string]struct {
		nodes, want, burst int
	}{
		"0 counts as 1":             {0, 1, 10},
		"more nodes than the burst": {20, 20, 1},
		"back to one node":          {1, 1, 10},
	}
	for name, c := range cases {
		u.shareDue(now.Add(time.Hour), 0)
		u.shareAnswered(now, c.nodes, 1, 10)
		if u.share() != c.want || u.rate.Burst() != c.burst {
			t.Errorf("%s: share %d, burst %d; want %d, %d", name, u.share(), u.rate.Burst(), c.want, c.burst)
		}
	}
}

func TestUserShareKeptByPrune(t *testing.T) {
	now := time.Unix(1000, 0)
	us := newUserStates(func() *userState {
		return &userState{errors: rate.NewLimiter(1, 1), rate: rate.NewLimiter(1, 10)}
	})
	u := us.get("alice")
	u.shareDue(now, time.Second)
	if us.prune(now) != 1 {
		t.Fatal("a state was forgotten while its share was being asked for")
	}
	u.shareAnswered(now, 2, 1, 10) // every bucket full: only the share to keep
	if us.prune(now.Add(userShareKeep-time.Second)) != 1 || us.get("alice") != u {
		t.Fatal("a split share was forgotten within userShareKeep: the user would get the whole rate again")
	}
	if us.prune(now.Add(userShareKeep)) != 0 {
		t.Fatal("a full state whose share is old was kept")
	}
}
