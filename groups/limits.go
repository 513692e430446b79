package groups

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound how fast one user creates groups and adds members to them,
// on one node: each is a token bucket per user, holding up to its burst and
// refilling at its rate per hour. The members listed when a group is
// created count as adds. Zero values take the defaults; a negative rate is
// no limit.
type Limits struct {
	// CreateRate is the groups a user may create per hour once its
	// CreateBurst is spent. Default 30.
	CreateRate float64
	// CreateBurst is the groups a user may create at once. Default 10.
	CreateBurst int
	// AddRate is the members a user may add per hour once its AddBurst is
	// spent. Default 2000.
	AddRate float64
	// AddBurst is the members a user may add at once: a group created with
	// more other members than this is refused (ErrTooManyMembers). Default
	// 1024, the default largest group, so that one full group can be
	// created at once.
	AddBurst int
}

// Defaults of Limits.
const (
	DefaultCreateRate  = 30
	DefaultCreateBurst = 10
	DefaultAddRate     = 2000
	DefaultAddBurst    = 1024
)

// ErrRateLimited: a user created groups or added members faster than its
// Limits allow. The errors that match it are *RateLimitedError.
var ErrRateLimited = errors.New("rate limited")

// RateLimitedError is ErrRateLimited with what was limited and when to try
// again.
type RateLimitedError struct {
	// What was refused: "groups created" or "members added".
	What string
	// Wait is how long until the request would be allowed.
	Wait time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many %s, retry in %v", e.What, e.Wait.Round(time.Second))
}

// Is makes a RateLimitedError match ErrRateLimited.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// RetryAfter returns Wait.
func (e *RateLimitedError) RetryAfter() time.Duration { return e.Wait }

// pruneEvery is how often the buckets are swept for idle ones.
const pruneEvery = time.Minute

// limiter holds the per-user buckets of Limits. A bucket that has refilled
// is the same as none: the sweep, at most every pruneEvery, drops those, so
// the buckets kept are those of users who created or added within the last
// burst/rate (20 and 31 minutes with the defaults).
type limiter struct {
	mu     sync.Mutex // guards the buckets and pruned
	create buckets
	add    buckets
	pruned time.Time
}

// buckets are the token buckets of one limit, by user.
type buckets struct {
	what  string
	limit rate.Limit // tokens per second; rate.Inf is no limit
	burst int
	users map[string]*rate.Limiter
}

func newLimiter(l Limits) *limiter {
	if l.CreateRate == 0 {
		l.CreateRate = DefaultCreateRate
	}
	if l.CreateBurst <= 0 {
		l.CreateBurst = DefaultCreateBurst
	}
	if l.AddRate == 0 {
		l.AddRate = DefaultAddRate
	}
	if l.AddBurst <= 0 {
		l.AddBurst = DefaultAddBurst
	}
	perHour := func(r float64) rate.Limit {
		if r < 0 {
			return rate.Inf
		}
		return rate.Limit(r / 3600)
	}
	return &limiter{
		create: buckets{what: "groups created", limit: perHour(l.CreateRate), burst: l.CreateBurst, users: map[string]*rate.Limiter{}},
		add:    buckets{what: "members added", limit: perHour(l.AddRate), burst: l.AddBurst, users: map[string]*rate.Limiter{}},
	}
}

// take spends, for user, one group created (if create) and adds members
// added, all or nothing: a *RateLimitedError when a bucket lacks the
// tokens, ErrTooManyMembers when adds exceeds what the add bucket holds.
func (l *limiter) take(user string, create bool, adds int, now time.Time) error {
	if adds > l.add.burst && l.add.limit != rate.Inf {
		return fmt.Errorf("%w: at most %d members are added at once", ErrTooManyMembers, l.add.burst)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.pruned) >= pruneEvery {
		l.create.prune(now)
		l.add.prune(now)
		l.pruned = now
	}
	var lc, la *rate.Limiter
	if create {
		lc = l.create.of(user)
		if err := l.create.check(lc, 1, now); err != nil {
			return err
		}
	}
	if adds > 0 {
		la = l.add.of(user)
		if err := l.add.check(la, adds, now); err != nil {
			return err
		}
	}
	if lc != nil {
		lc.AllowN(now, 1)
	}
	if la != nil {
		la.AllowN(now, adds)
	}
	return nil
}

// of returns user's bucket, a full one if it has none; nil when there is no
// limit.
func (b *buckets) of(user string) *rate.Limiter {
	if b.limit == rate.Inf {
		return nil
	}
	lim := b.users[user]
	if lim == nil {
		lim = rate.NewLimiter(b.limit, b.burst)
		b.users[user] = lim
	}
	return lim
}

// check returns a *RateLimitedError unless lim holds n tokens at now.
func (b *buckets) check(lim *rate.Limiter, n int, now time.Time) error {
	if lim == nil {
		return nil
	}
	missing := float64(n) - lim.TokensAt(now)
	if missing <= 0 {
		return nil
	}
	wait := time.Duration(math.Ceil(missing / float64(b.limit) * float64(time.Second)))
	return &RateLimitedError{What: b.what, Wait: wait}
}

// prune drops the buckets that have refilled.
func (b *buckets) prune(now time.Time) {
	for user, lim := range b.users {
		if lim.TokensAt(now) >= float64(b.burst) {
			delete(b.users, user)
		}
	}
}
