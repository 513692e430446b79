package auth

import (
	"fmt"
	"testing"
	"time"
)

// clockThrottle is a Throttle on a clock the test moves.
type clockThrottle struct {
	*Throttle
	now time.Time
}

func newClockThrottle(cfg ThrottleConfig) *clockThrottle {
	ct := &clockThrottle{Throttle: NewThrottle(cfg), now: t0}
	ct.Throttle.now = func() time.Time { return ct.now }
	return ct
}

// fail runs one failed check of user from addr and returns the lockout it
// started; it fails the test when the check is refused.
func (ct *clockThrottle) fail(t *testing.T, user, addr string) time.Duration {
	t.Helper()
	c, wait := ct.Begin(user, addr)
	if wait > 0 {
		t.Fatalf("check of %q from %q refused for %v, want it let through", user, addr, wait)
	}
	return c.Fail()
}

func TestThrottleBackoff(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: 3, AddrFailures: -1, Backoff: time.Second, MaxBackoff: 10 * time.Second})
	// Failures 1 and 2 are free; the 3rd locks for 1s, then 2s, 4s, 8s, 10s (the cap), 10s.
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		got := ct.fail(t, "alice", "")
		if got != w {
			t.Fatalf("failure %d: lockout %v, want %v", i+1, got, w)
		}
		if w == 0 {
			continue
		}
		// Locked: refused until the lockout ends, whatever the number of tries.
		for range 10 {
			if _, wait := ct.Begin("alice", ""); wait != w {
				t.Fatalf("after failure %d: Begin waits %v, want %v", i+1, wait, w)
			}
		}
		ct.now = ct.now.Add(w - time.Nanosecond)
		if _, wait := ct.Begin("alice", ""); wait != time.Nanosecond {
			t.Fatalf("just before the lockout ends: wait %v, want 1ns", wait)
		}
		ct.now = ct.now.Add(time.Nanosecond)
	}
	// Others are not affected.
	if _, wait := ct.Begin("bob", ""); wait != 0 {
		t.Fatalf("bob refused for %v", wait)
	}
}

// TestThrottleCountsNotTime: N failures lock, the (N+1)th check is refused
// even with no time passing, and refused checks extend nothing.
func TestThrottleCountsNotTime(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: 5, AddrFailures: -1, Backoff: time.Minute})
	for range 4 {
		if got := ct.fail(t, "alice", ""); got != 0 {
			t.Fatalf("lockout %v before the 5th failure", got)
		}
	}
	if got := ct.fail(t, "alice", ""); got != time.Minute {
		t.Fatalf("5th failure: lockout %v, want 1m", got)
	}
	for i := range 100 {
		if _, wait := ct.Begin("alice", ""); wait != time.Minute {
			t.Fatalf("attempt %d after the 5th failure: wait %v, want 1m (refused attempts must not extend it)", i, wait)
		}
	}
	ct.now = ct.now.Add(time.Minute)
	c, wait := ct.Begin("alice", "")
	if wait != 0 {
		t.Fatalf("after the lockout: refused for %v", wait)
	}
	c.Succeed()
	// A success starts the user afresh: 4 free failures again.
	for range 4 {
		if got := ct.fail(t, "alice", ""); got != 0 {
			t.Fatalf("after a success: lockout %v before the 5th failure", got)
		}
	}
}

func TestThrottleAddress(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: -1, AddrFailures: 3, Backoff: time.Minute})
	for i := range 3 {
		ct.fail(t, fmt.Sprintf("user%d", i), "192.0.2.7:4000")
	}
	tests := map[string]struct {
		addr   string
		locked bool
	}{
		"same address, other port":      {"192.0.2.7:5000", true},
		"same address, no port":         {"192.0.2.7", true},
		"same address, IPv4 in IPv6":    {"[::ffff:192.0.2.7]:1", true},
		"next address":                  {"192.0.2.8:4000", false},
		"unparseable":                   {"pipe", false},
		"empty (unknown)":               {"", false},
		"IPv6, another /64":             {"[2001:db8:0:2::1]:1", false},
		"IPv6 of the locked /64 (none)": {"[2001:db8:0:1::1]:1", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, wait := ct.Begin("someone", tc.addr)
			if (wait > 0) != tc.locked {
				t.Fatalf("Begin from %q: wait %v, want locked %v", tc.addr, wait, tc.locked)
			}
			c.Abandon()
		})
	}
	// One IPv6 /64 is one address.
	for i := range 3 {
		ct.fail(t, "x", fmt.Sprintf("[2001:db8:0:1::%x]:443", i+1))
	}
	if _, wait := ct.Begin("y", "[2001:db8:0:1:ffff:ffff:ffff:ffff]:1"); wait == 0 {
		t.Error("another address of a locked IPv6 /64 let through")
	}
	// A success does not clear an address (one's own account must not wipe
	// a guesser's failures).
	ct.now = ct.now.Add(time.Minute)
	c, wait := ct.Begin("mine", "192.0.2.7:1")
	if wait != 0 {
		t.Fatalf("after the lockout: refused for %v", wait)
	}
	c.Succeed()
	if got := ct.fail(t, "other", "192.0.2.7:1"); got != 2*time.Minute {
		t.Fatalf("failure after a success from the address: lockout %v, want 2m (the count goes on)", got)
	}
}

// TestThrottleUserOrAddress: a check is refused when either its user name
// or its address is locked.
func TestThrottleUserOrAddress(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: 2, AddrFailures: 3, Backoff: time.Hour})
	ct.fail(t, "alice", "192.0.2.1:1")
	ct.fail(t, "alice", "192.0.2.2:1") // alice locked, from two addresses
	if _, wait := ct.Begin("alice", "192.0.2.3:1"); wait != time.Hour {
		t.Errorf("alice from a fresh address: wait %v, want 1h", wait)
	}
	if _, wait := ct.Begin("bob", "192.0.2.1:1"); wait != 0 {
		t.Errorf("bob from an address with one failure: wait %v", wait)
	}
	ct.fail(t, "bob", "192.0.2.9:1")
	ct.fail(t, "carol", "192.0.2.9:1")
	ct.fail(t, "dave", "192.0.2.9:1") // the address locked
	if _, wait := ct.Begin("erin", "192.0.2.9:1"); wait != time.Hour {
		t.Errorf("erin from a locked address: wait %v, want 1h", wait)
	}
	// A refusal by the address leaves no check under way for the user.
	for range 5 {
		ct.Begin("frank", "192.0.2.9:1")
	}
	if got := ct.fail(t, "frank", "192.0.2.10:1"); got != 0 {
		t.Errorf("frank's first failure: lockout %v", got)
	}
	if users, addrs := ct.Locked(); users != 1 || addrs != 1 {
		t.Errorf("Locked() = %d users, %d addresses; want 1, 1", users, addrs)
	}
}

// TestThrottleParallel: checks under way count, so a burst of parallel
// guesses gets no more checks than the failures left.
func TestThrottleParallel(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: 5, AddrFailures: -1, Backoff: time.Second})
	var checks []Check
	for range 5 {
		c, wait := ct.Begin("alice", "")
		if wait > 0 {
			t.Fatalf("check %d refused", len(checks)+1)
		}
		checks = append(checks, c)
	}
	if _, wait := ct.Begin("alice", ""); wait == 0 {
		t.Fatal("a 6th check let through while 5 are under way")
	}
	checks[0].Abandon() // the store failed: counts neither way
	c, wait := ct.Begin("alice", "")
	if wait > 0 {
		t.Fatal("check refused after one was abandoned")
	}
	checks[0] = c
	for _, c := range checks {
		c.Fail()
	}
	ct.now = ct.now.Add(time.Minute) // after the lockout, before ForgetAfter
	// Once locked out, one check at a time.
	c, wait = ct.Begin("alice", "")
	if wait > 0 {
		t.Fatalf("after the lockout: refused for %v", wait)
	}
	if _, wait := ct.Begin("alice", ""); wait == 0 {
		t.Fatal("a second check let through after a lockout")
	}
	c.Succeed()
}

func TestThrottleForget(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: 3, AddrFailures: -1, Backoff: time.Second,
		MaxBackoff: time.Minute, ForgetAfter: time.Hour})
	for range 3 {
		ct.fail(t, "alice", "")
	}
	ct.now = ct.now.Add(time.Hour - time.Nanosecond)
	if got := ct.fail(t, "alice", ""); got != 2*time.Second {
		t.Fatalf("4th failure within ForgetAfter: lockout %v, want 2s", got)
	}
	ct.now = ct.now.Add(time.Hour)
	if got := ct.fail(t, "alice", ""); got != 0 {
		t.Fatalf("a failure ForgetAfter after the last: lockout %v, want none (forgotten)", got)
	}
	ct.now = ct.now.Add(time.Hour)
	ct.Locked() // sweeps
	if n := ct.entries(); n != 0 {
		t.Errorf("%d entries left after ForgetAfter, want 0", n)
	}
}

// TestThrottleSuccessLeavesNothing: checks that succeed or are abandoned
// leave no entry behind.
func TestThrottleSuccessLeavesNothing(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{})
	for i := range 100 {
		c, _ := ct.Begin(fmt.Sprintf("user%d", i), fmt.Sprintf("192.0.2.%d:1", i))
		if i%2 == 0 {
			c.Succeed()
		} else {
			c.Abandon()
		}
	}
	if n := ct.entries(); n != 0 {
		t.Errorf("%d entries after successes, want 0", n)
	}
}

func TestThrottleBounded(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: 1, AddrFailures: -1, Backoff: time.Hour, MaxEntries: throttleShards * 4})
	for i := range 10_000 {
		ct.fail(t, fmt.Sprintf("user%d", i), "")
	}
	if n := ct.entries(); n > throttleShards*4 {
		t.Fatalf("%d entries, want at most MaxEntries = %d", n, throttleShards*4)
	}
	// Entries whose lockout is over go first.
	ct2 := newClockThrottle(ThrottleConfig{UserFailures: 1, AddrFailures: -1, Backoff: time.Second, MaxBackoff: time.Second,
		ForgetAfter: time.Second, MaxEntries: throttleShards})
	for i := range 1000 {
		ct2.fail(t, fmt.Sprintf("old%d", i), "")
	}
	ct2.now = ct2.now.Add(time.Hour)
	ct2.fail(t, "alice", "")
	if _, wait := ct2.Begin("alice", ""); wait == 0 {
		t.Fatal("alice's lockout was evicted to make room, with forgotten entries to drop")
	}
}

func TestThrottleDisabled(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: -1, AddrFailures: -1})
	for range 100 {
		if got := ct.fail(t, "alice", "192.0.2.1:1"); got != 0 {
			t.Fatalf("lockout %v with throttling off", got)
		}
	}
	if n := ct.entries(); n != 0 {
		t.Errorf("%d entries with throttling off", n)
	}
}

// TestThrottleInvalidNames: names that cannot be an account's share one
// key, so that they cost no memory each.
func TestThrottleInvalidNames(t *testing.T) {
	ct := newClockThrottle(ThrottleConfig{UserFailures: 3, AddrFailures: -1, Backoff: time.Hour})
	for i := range 3 {
		ct.fail(t, fmt.Sprintf("Not-An-Id-%d", i), "")
	}
	if n := ct.entries(); n != 1 {
		t.Errorf("%d entries for invalid names, want 1", n)
	}
	if _, wait := ct.Begin("alice", ""); wait != 0 {
		t.Error("a valid name refused after invalid ones failed")
	}
}

func (ct *clockThrottle) entries() int {
	n := 0
	for i := range ct.shards {
		s := &ct.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
