// Package testwait lets tests wait for a condition, never for a time.
//
// A deadline here only bounds the wait, so that a broken test fails instead
// of hanging; a passing test stops waiting the moment its condition holds.
// Deadlines are scaled by PARLEY_TEST_PATIENCE (default 6): a loaded 2-core
// machine running the race detector must not fail a correct test.
package testwait

import (
	"os"
	"strconv"
	"testing"
	"time"
)

var patience = func() time.Duration {
	if f, err := strconv.Atoi(os.Getenv("PARLEY_TEST_PATIENCE")); err == nil && f > 0 {
		return time.Duration(f)
	}
	return 6
}()

// Patience returns d scaled by the patience factor: the deadline to give a
// wait that would take at most d on an idle machine.
func Patience(d time.Duration) time.Duration { return d * patience }

// Until checks cond until it holds, and fails the test when it still does
// not after Patience(d). cond may itself fail the test.
//
// Conditions without an event to wait on (a metric, a row in a store, a
// port that accepts again) are polled: every millisecond at first, backing
// off to 20 ms, so that a condition that holds soon is seen at once and a
// slow one does not keep a core busy.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Patience(d))
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Patience(d), what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
}
