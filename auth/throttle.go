package auth

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/parleychat/parley/protocol"
)

// ThrottleConfig configures the throttle of password checks (Throttle).
// Zero values mean the defaults.
type ThrottleConfig struct {
	// UserFailures is how many failed checks one user name may collect
	// before its checks are refused for Backoff, doubling with each further
	// failure. Default 5; negative: no per-user throttling.
	UserFailures int
	// AddrFailures is the same for one client address (an IPv4 address, an
	// IPv6 /64), whatever the user names. Default 20 (a carrier NAT puts
	// many people behind one address); negative: no per-address throttling.
	AddrFailures int
	// Backoff is the first lockout. Default 1s.
	Backoff time.Duration
	// MaxBackoff caps the doubling lockout. Default 15m.
	MaxBackoff time.Duration
	// ForgetAfter is how long a user name or address is remembered after
	// its last failure (and the end of its lockout): then it starts afresh.
	// Default 1h; at least MaxBackoff.
	ForgetAfter time.Duration
	// MaxEntries bounds the user names and addresses remembered (about 100
	// bytes each). When full, forgotten ones are dropped first, then the
	// least locked of a few. Default 100000.
	MaxEntries int
}

func (c *ThrottleConfig) setDefaults() {
	if c.UserFailures == 0 {
		c.UserFailures = 5
	}
	if c.AddrFailures == 0 {
		c.AddrFailures = 20
	}
	if c.Backoff <= 0 {
		c.Backoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 15 * time.Minute
	}
	c.MaxBackoff = max(c.MaxBackoff, c.Backoff)
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = time.Hour
	}
	c.ForgetAfter = max(c.ForgetAfter, c.MaxBackoff)
	if c.MaxEntries <= 0 {
		c.MaxEntries = 100_000
	}
}

// Throttle counts failed password checks per user name and per client
// address, and refuses checks while either is locked out: after
// UserFailures (AddrFailures) failures a key is locked for Backoff, and each
// further failure doubles it up to MaxBackoff. A key without failures for
// ForgetAfter is forgotten. Checks under way count too: a burst of parallel
// guesses gets no more checks than the failures left before the lockout,
// and a locked-out key that has waited gets one check at a time.
//
// A refused check is not a failure: it extends nothing, so that a client
// retrying in a loop is let through once the lockout ends. Memory is bounded
// (MaxEntries, in shards). Safe for concurrent use; it holds no goroutine.
type Throttle struct {
	cfg      ThrottleConfig
	now      func() time.Time // tests replace it
	seed     maphash.Seed
	shards   [throttleShards]throttleShard
	perShard int // MaxEntries / throttleShards, at least 1
}

const throttleShards = 32

type throttleShard struct {
	mu sync.Mutex // guards m
	m  map[throttleKey]*throttleEntry
}

// throttleKey is a user name (addr zero) or a client address (user empty).
type throttleKey struct {
	user string
	addr netip.Addr
}

type throttleEntry struct {
	failures int       // failed checks since the key was last forgotten
	pending  int       // checks begun and not yet ended
	last     time.Time // the last failure
	until    time.Time // checks are refused until then
}

// NewThrottle returns a Throttle.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	cfg.setDefaults()
	t := &Throttle{cfg: cfg, now: time.Now, seed: maphash.MakeSeed(), perShard: max(cfg.MaxEntries/throttleShards, 1)}
	for i := range t.shards {
		t.shards[i].m = map[throttleKey]*throttleEntry{}
	}
	return t
}

// Check is one password check let through by Begin. Exactly one of Fail,
// Succeed and Abandon ends it.
type Check struct {
	t    *Throttle
	keys []throttleKey
}

// Begin asks whether a password check of user from addr (a "host:port" or
// an IP address; anything else is not throttled by address) may run. It
// returns the check to end, or, when the check is refused, how long to
// wait before trying again.
func (t *Throttle) Begin(user, addr string) (Check, time.Duration) {
	c := Check{t: t, keys: t.keys(user, addr)}
	now := t.now()
	var wait time.Duration
	taken := 0
	for _, k := range c.keys {
		if wait = t.shard(k).begin(t, k, now); wait > 0 {
			break
		}
		taken++
	}
	if wait > 0 {
		for _, k := range c.keys[:taken] {
			t.shard(k).end(t, k, now, endAbandon)
		}
		return Check{}, wait
	}
	return c, 0
}

// Fail records a failed check and returns the lockout it starts (0 when
// the key still has failures left).
func (c Check) Fail() time.Duration {
	if c.t == nil {
		return 0
	}
	now := c.t.now()
	var wait time.Duration
	for _, k := range c.keys {
		wait = max(wait, c.t.shard(k).end(c.t, k, now, endFail))
	}
	return wait
}

// Succeed records a successful check: the user name starts afresh; the
// address keeps its failures (else one account of their own would let a
// guesser wipe them).
func (c Check) Succeed() {
	if c.t == nil {
		return
	}
	now := c.t.now()
	for _, k := range c.keys {
		c.t.shard(k).end(c.t, k, now, endSucceed)
	}
}

// Abandon ends a check that could not be made (the store was down): it
// counts neither way.
func (c Check) Abandon() {
	if c.t == nil {
		return
	}
	now := c.t.now()
	for _, k := range c.keys {
		c.t.shard(k).end(c.t, k, now, endAbandon)
	}
}

// Locked returns how many user names and addresses are locked out now.
// It visits every entry, forgetting those whose time has passed (a metric
// scrape calls it).
func (t *Throttle) Locked() (users, addrs int) {
	now := t.now()
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			switch {
			case now.Before(e.until):
				if k.user != "" {
					users++
				} else {
					addrs++
				}
			case t.forgotten(e, now):
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
	return users, addrs
}

// invalidUser is the one key of every user name that cannot be an
// account's: none can ever succeed, so they need no key each.
const invalidUser = "\x00invalid"

func (t *Throttle) keys(user, addr string) []throttleKey {
	keys := make([]throttleKey, 0, 2)
	if t.cfg.UserFailures > 0 {
		if !protocol.ValidID(user) {
			user = invalidUser
		}
		keys = append(keys, throttleKey{user: user})
	}
	if t.cfg.AddrFailures > 0 {
		if ip, ok := addrKey(addr); ok {
			keys = append(keys, throttleKey{addr: ip})
		}
	}
	return keys
}

// addrKey returns the address a client is throttled by: its IPv4 address,
// or the /64 of its IPv6 address (one subscriber's network, as
// limits.max_connections_per_ip counts them).
func addrKey(addr string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}, false
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err != nil {
			return netip.Addr{}, false
		}
		ip = p.Addr()
	}
	return ip, true
}

func (t *Throttle) shard(k throttleKey) *throttleShard {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(k.user)
	b := k.addr.As16()
	h.Write(b[:])
	return &t.shards[h.Sum64()%throttleShards]
}

func (t *Throttle) threshold(k throttleKey) int {
	if k.user != "" {
		return t.cfg.UserFailures
	}
	return t.cfg.AddrFailures
}

// forgotten reports whether e may be dropped: no check under way, the
// lockout over and the last failure ForgetAfter ago.
func (t *Throttle) forgotten(e *throttleEntry, now time.Time) bool {
	return e.pending == 0 && !now.Before(e.until) && now.Sub(e.last) >= t.cfg.ForgetAfter
}

// lockout is the lockout after failures failures of a key whose threshold
// is free: none below it, Backoff at it, doubling above it up to MaxBackoff.
func (t *Throttle) lockout(failures, free int) time.Duration {
	if failures < free {
		return 0
	}
	d := t.cfg.Backoff
	for i := free; i < failures && d < t.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, t.cfg.MaxBackoff)
}

// begin reserves a check of k, or returns how long to wait.
func (s *throttleShard) begin(t *Throttle, k throttleKey, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[k]
	if e != nil && t.forgotten(e, now) {
		delete(s.m, k)
		e = nil
	}
	if e == nil {
		if len(s.m) >= t.perShard {
			s.evict(t, now)
		}
		e = &throttleEntry{}
		s.m[k] = e
	}
	if now.Before(e.until) {
		return e.until.Sub(now)
	}
	// Checks left before the lockout; one at a time once it has started.
	left := t.threshold(k) - e.failures
	if left < 1 {
		left = 1
	}
	if e.pending >= left {
		return t.cfg.Backoff
	}
	e.pending++
	return 0
}

type endKind int

const (
	endFail endKind = iota
	endSucceed
	endAbandon
)

// end ends a check of k and returns the lockout a failure starts.
func (s *throttleShard) end(t *Throttle, k throttleKey, now time.Time, how endKind) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[k]
	if e == nil { // evicted meanwhile
		if how != endFail {
			return 0
		}
		if len(s.m) >= t.perShard {
			s.evict(t, now)
		}
		e = &throttleEntry{pending: 1}
		s.m[k] = e
	}
	e.pending = max(e.pending-1, 0)
	var wait time.Duration
	switch how {
	case endFail:
		e.failures++
		e.last = now
		if wait = t.lockout(e.failures, t.threshold(k)); wait > 0 {
			e.until = now.Add(wait)
		}
	case endSucceed:
		if k.user != "" {
			e.failures, e.until = 0, time.Time{}
		}
	}
	if e.pending == 0 && e.failures == 0 {
		delete(s.m, k)
	}
	return wait
}

// evict makes room for one entry: it drops the forgotten entries, or, when
// there are none, the least locked of a few (map order is random).
func (s *throttleShard) evict(t *Throttle, now time.Time) {
	n := len(s.m)
	for k, e := range s.m {
		if t.forgotten(e, now) {
			delete(s.m, k)
		}
	}
	if len(s.m) < n {
		return
	}
	var victim throttleKey
	var worst *throttleEntry
	seen := 0
	for k, e := range s.m {
		if e.pending > 0 {
			continue
		}
		if worst == nil || e.until.Before(worst.until) || (e.until.Equal(worst.until) && e.failures < worst.failures) {
			victim, worst = k, e
		}
		if seen++; seen == 8 {
			break
		}
	}
	if worst != nil {
		delete(s.m, victim)
	}
}
