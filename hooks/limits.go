package hooks

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// This file holds the bounds Parley puts on what one client or one user may
// cost: the pure logic, with no mochi or store in it, so that it is unit
// tested on its own. Where each bound is applied is said at its use.

// maxRateWait bounds how long a publish that its rate limits hold back
// waits on its client's read goroutine (MQTT 3.1.1, and MQTT 5 at QoS 0,
// which have no PUBACK code to refuse it with). While it waits mochi reads
// nothing more from the client, so TCP slows the client down. A publish
// that would wait longer disconnects its client instead, unacknowledged.
const maxRateWait = 2 * time.Second

// maxUsernameLen is the longest CONNECT username looked up: user ids are at
// most protocol.MaxIDLen bytes and administrators' names are configured;
// anything longer is refused as bad credentials without a lookup.
const maxUsernameLen = 128

// checkTopic reports why a topic name (or a subscription's filter) is out of
// bounds: longer than maxLen bytes or more than maxLevels levels. Parley's
// own topics (u/{user}, g/{group}, p/{user}) are 2 levels of at most 66
// bytes; the bounds are for administrators' plain MQTT. The length is
// checked first, so counting levels costs at most maxLen bytes.
func checkTopic(topic string, maxLen, maxLevels int) (detail string, ok bool) {
	if maxLen > 0 && len(topic) > maxLen {
		return fmt.Sprintf("topic longer than %d bytes", maxLen), false
	}
	if maxLevels > 0 && strings.Count(topic, "/")+1 > maxLevels {
		return fmt.Sprintf("topic deeper than %d levels", maxLevels), false
	}
	return "", true
}

// reserve takes one token from each limiter (nil ones are skipped) and
// returns how long the caller must wait before acting on them. When that
// would be longer than maxWait nothing is taken and ok is false. Callers
// that cannot wait pass maxWait 0.
func reserve(now time.Time, maxWait time.Duration, lims ...*rate.Limiter) (wait time.Duration, ok bool) {
	var rs [2]*rate.Reservation
	n := 0
	cancel := func() {
		for _, r := range rs[:n] {
			r.CancelAt(now)
		}
	}
	for _, lim := range lims {
		if lim == nil {
			continue
		}
		r := lim.ReserveN(now, 1)
		if !r.OK() {
			cancel()
			return 0, false
		}
		if n == len(rs) {
			panic("hooks: reserve takes at most two limiters")
		}
		rs[n] = r
		n++
		if d := r.DelayFrom(now); d > wait {
			wait = d
		}
	}
	if wait > maxWait {
		cancel()
		return 0, false
	}
	return wait, true
}

// strikes counts a connection's refusals for rate in fixed windows: a client
// that goes on publishing while it is refused for rate is disconnected
// rather than answered forever. Owned by the client's read goroutine.
type strikes struct {
	n     int
	since time.Time
}

// add counts one refusal at now and reports whether the connection has
// now been refused more than limit times in the current window.
func (s *strikes) add(now time.Time, limit int, window time.Duration) (over bool) {
	if now.Sub(s.since) >= window || now.Before(s.since) {
		s.n, s.since = 0, now
	}
	s.n++
	return limit > 0 && s.n > limit
}

// userState is what one user's connections share on this node: the
// user's publish rate and the budget of error entries stored for the
// user's refused publishes.
type userState struct {
	mu         sync.Mutex    // guards the fields below
	rate       *rate.Limiter // nil when the per-user rate is off
	errors     *rate.Limiter // error entries: ErrorEntries per ErrorWindow
	suppressed int64         // refusals whose error entries were not stored since the last one that was
}

// takeError reports whether an error entry may be stored for the user at
// now. If so, suppressed is how many were dropped since the last one (the
// entry counts them); if not, the drop is counted.
func (u *userState) takeError(now time.Time) (suppressed int64, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.errors.AllowN(now, 1) {
		u.suppressed++
		return 0, false
	}
	suppressed, u.suppressed = u.suppressed, 0
	return suppressed, true
}

// untouched reports whether the state is as a new one would be: every
// bucket full and nothing suppressed. Such a state can be forgotten.
func (u *userState) untouched(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	full := func(l *rate.Limiter) bool { return l == nil || l.TokensAt(now) >= float64(l.Burst()) }
	return u.suppressed == 0 && full(u.rate) && full(u.errors)
}

// userStates holds the userState of each user seen recently, in shards.
// Entries are created on use and forgotten by prune once untouched, so a
// user who disconnects and reconnects finds its buckets as it left them.
type userStates struct {
	newState func() *userState
	shards   [32]userShard
}

type userShard struct {
	mu    sync.Mutex // guards users
	users map[string]*userState
}

var userSeed = maphash.MakeSeed()

func newUserStates(newState func() *userState) *userStates {
	us := &userStates{newState: newState}
	for i := range us.shards {
		us.shards[i].users = map[string]*userState{}
	}
	return us
}

// get returns user's state, creating it.
func (us *userStates) get(user string) *userState {
	sh := &us.shards[maphash.String(userSeed, user)%uint64(len(us.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.users[user]
	if u == nil {
		u = us.newState()
		sh.users[user] = u
	}
	return u
}

// prune forgets the states that are untouched at now and returns how many
// remain.
func (us *userStates) prune(now time.Time) int {
	left := 0
	for i := range us.shards {
		sh := &us.shards[i]
		sh.mu.Lock()
		for user, u := range sh.users {
			if u.untouched(now) {
				delete(sh.users, user)
			}
		}
		left += len(sh.users)
		sh.mu.Unlock()
	}
	return left
}
