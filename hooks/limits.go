package hooks

import (
	"context"
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

// UserSpread says how many nodes of a cluster hold a connection of a user.
// The per-user publish rate (InboxConfig.UserRate) is split between them,
// so that connections on more nodes do not buy more rate, as more
// connections on one node do not. The publisher needs only this one
// question; cluster.Bus answers it from the presence bucket. A single node
// has none, and keeps the whole rate.
type UserSpread interface {
	// UserNodes returns how many live nodes hold a connection of user: at
	// least 1 when asked by a node that holds one. It may do network I/O,
	// so the publisher asks it off the clients' read goroutines.
	UserNodes(ctx context.Context, user string) (int, error)
}

// userShareKeep is how long a user's state whose rate is split between
// several nodes is kept after its share was last asked for, even when its
// buckets are full: forgotten, it would start again with the whole per-node
// rate until its next refresh.
const userShareKeep = time.Minute

// userState is what one user's connections share on this node: the
// user's publish rate (in a cluster, this node's share of it) and the
// budget of error entries stored for the user's refused publishes.
type userState struct {
	mu         sync.Mutex    // guards the fields below
	rate       *rate.Limiter // nil when the per-user rate is off
	errors     *rate.Limiter // error entries: ErrorEntries per ErrorWindow
	suppressed int64         // refusals whose error entries were not stored since the last one that was
	nodes      int           // the nodes rate is split between, as last answered; 0: never asked (the whole rate)
	asked      time.Time     // when the share was last asked for, answered or not
	refreshing bool          // a refresh of the share is queued or running
}

// shareDue reports whether the user's share of the rate should be asked
// for at now: never asked, or last asked every or longer ago, and no
// refresh under way. If so the refresh is counted as under way until
// shareAnswered or shareUnanswered.
func (u *userState) shareDue(now time.Time, every time.Duration) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.refreshing || (!u.asked.IsZero() && now.Sub(u.asked) < every && !now.Before(u.asked)) {
		return false
	}
	u.refreshing, u.asked = true, now
	return true
}

// shareAnswered ends a refresh: the user's connections are on nodes nodes
// (less than 1 counts as 1), and the user's limiter becomes this node's
// share of the user's whole rate and burst: total/nodes, and burst/nodes
// rounded down (so that the shares never add up to more than burst) but
// at least 1. Tokens beyond the new burst are dropped at the next
// reservation.
func (u *userState) shareAnswered(now time.Time, nodes int, total rate.Limit, burst int) {
	nodes = max(nodes, 1)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.refreshing = false
	was := max(u.nodes, 1)
	u.nodes = nodes
	if u.rate == nil || nodes == was {
		return
	}
	u.rate.SetLimitAt(now, total/rate.Limit(nodes))
	u.rate.SetBurstAt(now, max(1, burst/nodes))
}

// shareUnanswered ends a refresh that got no answer (the cluster's bus is
// away, or the queue was full): the last known share stays, and it is
// asked for again at the first publish a refresh interval after this one.
func (u *userState) shareUnanswered() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.refreshing = false
}

// share returns how many nodes the user's rate is split between, as last
// answered: 0 if it never was (the whole per-node rate).
func (u *userState) share() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.nodes
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
// bucket full, nothing suppressed, and no share of a split rate to keep (a
// refresh under way, or a split asked for within userShareKeep). Such a
// state can be forgotten.
func (u *userState) untouched(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.refreshing || (u.nodes > 1 && now.Sub(u.asked) < userShareKeep) {
		return false
	}
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

func (us *userStates) shard(user string) *userShard {
	return &us.shards[maphash.String(userSeed, user)%uint64(len(us.shards))]
}

// get returns user's state, creating it.
func (us *userStates) get(user string) *userState {
	sh := us.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.users[user]
	if u == nil {
		u = us.newState()
		sh.users[user] = u
	}
	return u
}

// peek returns user's state if there is one, without creating it.
func (us *userStates) peek(user string) *userState {
	sh := us.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.users[user]
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
