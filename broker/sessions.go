package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/cluster"
	"github.com/parleychat/parley/groups"
	"github.com/parleychat/parley/storage"
)

// Connected reports whether a client id has a live connection on this node.
// Tests use it to wait for a disconnect to be handled; an operator's view of
// the node's clients can build on it.
func (s *Server) Connected(clientID string) bool {
	cl, ok := s.mqtt.Clients.Get(clientID)
	return ok && !cl.Closed()
}

// ClusterConnected reports whether the node is connected to its cluster's
// bus (false on a single node).
func (s *Server) ClusterConnected() bool { return s.bus != nil && s.bus.Check() == nil }

// HasSession reports whether the node holds a session (connected or not)
// for a client id.
func (s *Server) HasSession(clientID string) bool {
	_, ok := s.mqtt.Clients.Get(clientID)
	return ok
}

// Subscribed reports whether a client id holds a subscription to filter on
// this node.
func (s *Server) Subscribed(clientID, filter string) bool {
	cl, ok := s.mqtt.Clients.Get(clientID)
	if !ok {
		return false
	}
	_, ok = cl.State.Subscriptions.Get(filter)
	return ok
}

// UserShare returns how many nodes of the cluster a user's publish rate is
// split between on this node, as this node last counted them: 0 if it never
// did (a single node, a user who has not published here lately, or no
// answer yet), which means the whole rate (limits.user_rate).
func (s *Server) UserShare(user string) int { return s.inbox.UserShare(user) }

// Sessions: which access token each MQTT connection authenticated with, so
// that ending a session (revoking its token), changing a password or
// deleting an account ends the connections at once, on every node; and the
// account routes of the API (api.Sessions) over auth.Service and groups.
//
// A revocation made through this node's auth.Service (OnRevoke) ends the
// connections here and is announced on the bus (cluster.EventTokensRevoked,
// cluster.EventUserDeleted); the other nodes end theirs and drop the
// tokens from their caches (handleEvents). Two gaps are closed:
//
//   - A connection authenticated just before a revocation and established
//     just after it was applied: revoked tokens and deleted users are
//     remembered for revokedMemory, and a connection established with one
//     ends at once.
//   - A node that missed the event (NATS unreachable), or a revocation
//     made outside any node (parley users on a node without NATS): every
//     Config.SessionCheck the node asks the store which of its
//     connections' tokens are still valid and ends the others. The same
//     check ends connections whose token expired, and counts a live
//     connection as a use of its token (once an hour), so that a device
//     that stays connected keeps its token.

// Reason codes of a DISCONNECT that ends a session (MQTT 3.1.1 clients are
// closed): 0x87 not authorized, because the credentials the connection was
// authorized with no longer are. A client should not reconnect with the
// same token (its CONNACK would be 0x86) but sign in again. Not 0x98
// administrative action: most ends are the user's own doing, and 0x87 tells
// a client what to do; not 0x8E, which means the device's session lives on
// elsewhere.
var (
	errTokenRevoked   = packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: "token revoked"}
	errAccountDeleted = packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: "account deleted"}
	errTokenInvalid   = packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: "token expired or revoked"}
)

const (
	// revokedMemory is how long a revoked token or deleted user is
	// remembered, for connections being set up while it was revoked: well
	// above a credential check's timeout plus a CONNACK's write.
	revokedMemory = 2 * time.Minute
	// flushEvery is how often the uses of tokens are written.
	flushEvery = time.Second
	// liveUse is how often a live connection counts as a use of its token.
	liveUse = time.Hour
	// validChunk is the most tokens one check asks the store about.
	validChunk = 1000
)

// sessions is a mochi hook (the connections' tokens) and api.Sessions.
type sessions struct {
	mqtt.HookBase
	srv      *mqtt.Server
	accounts *auth.Service
	store    storage.Store
	groups   *groups.Service
	bus      *cluster.Bus // nil on a single node
	node     string       // the node's name in a cluster
	check    time.Duration
	log      *slog.Logger
	// deleted, if set, is told of each deleted user once its connections
	// are ending here: the node stops showing the user's presence.
	onDeleted func(user string)

	mu      sync.Mutex // guards the fields below
	conns   map[*mqtt.Client]*connToken
	byToken map[[32]byte]map[*mqtt.Client]struct{}
	revoked map[[32]byte]time.Time // recently revoked tokens, when
	deleted map[string]time.Time   // recently deleted users, when

	quit      chan struct{}
	wg        sync.WaitGroup // the loop and the disconnects
	started   atomic.Bool
	closeOnce sync.Once
}

// connToken is what sessions knows of a connection.
type connToken struct {
	token  [32]byte
	user   string
	addr   string
	since  time.Time
	usedAt time.Time // when it last counted as a use of its token
}

func newSessions(s *Server, d Deps, grp *groups.Service) *sessions {
	ss := &sessions{srv: s.mqtt, accounts: d.Accounts, store: d.Store, groups: grp, bus: s.bus, check: s.cfg.SessionCheck,
		log: s.log.With("component", "sessions"), conns: map[*mqtt.Client]*connToken{},
		byToken: map[[32]byte]map[*mqtt.Client]struct{}{}, revoked: map[[32]byte]time.Time{}, deleted: map[string]time.Time{},
		quit: make(chan struct{})}
	if s.bus != nil {
		ss.node = s.bus.Node()
	}
	return ss
}

// initSessions builds the node's sessions, registers its hook and has the
// accounts report their revocations to it.
func (s *Server) initSessions(d Deps) error {
	var gb groups.Broker = s.inbox
	if s.bus != nil {
		gb = clusterGroups{s.inbox, s.bus}
	}
	s.sessions = newSessions(s, d, groups.New(s.cfg.groups(nil), d.Store, gb))
	if err := s.mqtt.AddHook(s.sessions, nil); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	d.Accounts.OnRevoke(s.sessions.revokedHere)
	return nil
}

// ID implements mqtt.Hook.
func (ss *sessions) ID() string { return "parley-sessions" }

// Provides implements mqtt.Hook.
func (ss *sessions) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}

// OnSessionEstablished records the token a user's connection authenticated
// with (the CONNECT password), and counts the connection as a use of it.
// A connection whose token was revoked, or whose user was deleted, while
// it was being set up ends here. Runs on the client's goroutine, before it
// reads its first packet; no I/O.
func (ss *sessions) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	user := string(cl.Properties.Username)
	if cl.Net.Inline || ss.accounts.IsAdmin(user) {
		return // an administrator's password is no token
	}
	token := auth.HashToken(string(pk.Connect.Password))
	addr := hostOf(cl.Net.Remote)
	now := time.Now()
	ss.mu.Lock()
	_, revoked := ss.revoked[token]
	_, deleted := ss.deleted[user]
	if !revoked && !deleted {
		ss.conns[cl] = &connToken{token: token, user: user, addr: addr, since: now, usedAt: now}
		if ss.byToken[token] == nil {
			ss.byToken[token] = map[*mqtt.Client]struct{}{}
		}
		ss.byToken[token][cl] = struct{}{}
	}
	ss.mu.Unlock()
	if revoked || deleted {
		ss.log.Info("connection ended: its token was revoked as it connected", "client", cl.ID, "user", user)
		ss.disconnect(cl, errTokenRevoked)
		return
	}
	ss.accounts.NoteUse(token, auth.Use{Addr: addr, Client: cl.ID})
}

// OnDisconnect forgets a connection.
func (ss *sessions) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	c, ok := ss.conns[cl]
	if !ok {
		return
	}
	delete(ss.conns, cl)
	if m := ss.byToken[c.token]; m != nil {
		delete(m, cl)
		if len(m) == 0 {
			delete(ss.byToken, c.token)
		}
	}
}

// hostOf returns the host of a "host:port" address.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// revokedHere applies a revocation made through this node's accounts and
// announces it to the other nodes.
func (ss *sessions) revokedHere(r auth.Revocation) {
	ss.end(r)
	if ss.bus == nil {
		return
	}
	kind := cluster.EventTokensRevoked
	if r.Deleted {
		kind = cluster.EventUserDeleted
	}
	ss.bus.Publish(kind, cluster.Revoked{User: r.User, Tokens: r.Tokens})
}

// end ends the connections a revocation concerns, here: those
// authenticated with its tokens, and every connection of a deleted user.
func (ss *sessions) end(r auth.Revocation) {
	now := time.Now()
	var ending []*mqtt.Client
	ss.mu.Lock()
	ss.forgetOld(now)
	for _, t := range r.Tokens {
		if len(t) != len([32]byte{}) {
			continue
		}
		h := [32]byte(t)
		ss.revoked[h] = now
		for cl := range ss.byToken[h] {
			ending = append(ending, cl)
		}
	}
	if r.Deleted && r.User != "" {
		ss.deleted[r.User] = now
		for cl, c := range ss.conns {
			if c.user == r.User && !slices.Contains(ending, cl) {
				ending = append(ending, cl)
			}
		}
	}
	ss.mu.Unlock()
	code := errTokenRevoked
	if r.Deleted {
		code = errAccountDeleted
	}
	for _, cl := range ending {
		ss.log.Info("connection ended: "+code.Reason, "client", cl.ID, "user", string(cl.Properties.Username))
		ss.goDisconnect(cl, code)
	}
	if r.Deleted && r.User != "" && ss.onDeleted != nil {
		ss.onDeleted(r.User)
	}
}

// forgetOld forgets the revoked tokens and deleted users older than
// revokedMemory. ss.mu must be held.
func (ss *sessions) forgetOld(now time.Time) {
	for h, at := range ss.revoked {
		if now.Sub(at) > revokedMemory {
			delete(ss.revoked, h)
		}
	}
	for u, at := range ss.deleted {
		if now.Sub(at) > revokedMemory {
			delete(ss.deleted, u)
		}
	}
}

// disconnect ends a connection: MQTT 5 clients are told why, 3.1.1 ones
// are closed.
func (ss *sessions) disconnect(cl *mqtt.Client, code packets.Code) {
	if cl.Closed() {
		return
	}
	if cl.Properties.ProtocolVersion == 5 {
		_ = ss.srv.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

// goDisconnect disconnects off the caller's goroutine: writing the
// DISCONNECT can wait for a client that does not read (up to the write
// timeout), and the caller is an HTTP request or the bus.
func (ss *sessions) goDisconnect(cl *mqtt.Client, code packets.Code) {
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		ss.disconnect(cl, code)
	}()
}

// start runs the loop that writes tokens' uses and checks the
// connections' tokens.
func (ss *sessions) start() {
	ss.started.Store(true)
	ss.wg.Add(1)
	go ss.run()
}

// close stops the loop, writes the last uses and waits for the
// disconnects under way. Safe to call twice.
func (ss *sessions) close() {
	ss.closeOnce.Do(func() {
		close(ss.quit)
		ss.wg.Wait()
		if ss.started.Load() {
			ss.flush()
		}
	})
}

func (ss *sessions) run() {
	defer ss.wg.Done()
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	check := time.NewTicker(ss.check)
	defer check.Stop()
	for {
		select {
		case <-ss.quit:
			return
		case <-flush.C:
			ss.flush()
		case <-check.C:
			ss.checkTokens()
		}
	}
}

func (ss *sessions) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ss.accounts.FlushUses(ctx); err != nil {
		ss.log.Warn("token uses not recorded", "error", err)
	}
}

// checkTokens ends the connections whose tokens the store no longer
// knows as valid (revoked where this node did not hear of it, or
// expired), and counts the others as uses of their tokens once an hour.
func (ss *sessions) checkTokens() {
	now := time.Now()
	ss.mu.Lock()
	ss.forgetOld(now)
	hashes := make([][]byte, 0, len(ss.byToken))
	for h := range ss.byToken {
		hashes = append(hashes, h[:])
	}
	var uses []connToken
	for _, c := range ss.conns {
		if now.Sub(c.usedAt) >= liveUse {
			c.usedAt = now
			uses = append(uses, *c)
		}
	}
	ss.mu.Unlock()
	for _, c := range uses {
		ss.accounts.NoteUse(c.token, auth.Use{Addr: c.addr})
	}
	valid := map[[32]byte]bool{}
	for len(hashes) > 0 {
		chunk := hashes[:min(len(hashes), validChunk)]
		hashes = hashes[len(chunk):]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		found, err := ss.store.ValidTokens(ctx, chunk, now)
		cancel()
		if err != nil {
			ss.log.Warn("cannot check the connections' tokens", "error", err)
			return
		}
		for _, h := range chunk {
			valid[[32]byte(h)] = false
		}
		for _, h := range found {
			if len(h) == len([32]byte{}) {
				valid[[32]byte(h)] = true
			}
		}
	}
	var gone [][]byte
	for h, ok := range valid {
		if !ok {
			gone = append(gone, h[:])
		}
	}
	if len(gone) == 0 {
		return
	}
	ss.accounts.Forget(gone)
	var ending []*mqtt.Client
	ss.mu.Lock()
	for _, t := range gone {
		for cl, c := range ss.conns {
			// Only connections that were here at the check: a token is
			// never valid again once it was not.
			if c.token == [32]byte(t) && !c.since.After(now) {
				ending = append(ending, cl)
			}
		}
	}
	ss.mu.Unlock()
	for _, cl := range ending {
		ss.log.Info("connection ended: its token expired or was revoked", "client", cl.ID,
			"user", string(cl.Properties.Username))
		ss.goDisconnect(cl, errTokenInvalid)
	}
}

// connections returns the live connections authenticated with token.
func (ss *sessions) connections(token []byte) []api.Connection {
	if len(token) != len([32]byte{}) {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []api.Connection
	for cl := range ss.byToken[[32]byte(token)] {
		c := ss.conns[cl]
		out = append(out, api.Connection{ClientID: cl.ID, Node: ss.node, Addr: c.addr, Since: c.since})
	}
	slices.SortFunc(out, func(a, b api.Connection) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out
}

// Used implements api.Sessions.
func (ss *sessions) Used(token, addr, agent string) {
	ss.accounts.NoteUse(auth.HashToken(token), auth.Use{Addr: hostOf(addr), Agent: agent})
}

// List implements api.Sessions: the sessions with their connections on
// this node. (Those on other nodes would cost a question to every node.)
func (ss *sessions) List(ctx context.Context, user, token string) ([]api.Session, error) {
	list, err := ss.accounts.Sessions(ctx, user)
	if err != nil {
		return nil, err
	}
	h := auth.HashToken(token)
	current := auth.SessionID(h[:])
	out := make([]api.Session, len(list))
	for i, s := range list {
		out[i] = api.Session{ID: s.ID, Current: s.ID == current, CreatedAt: s.CreatedAt, LastUsedAt: s.LastUsedAt,
			ExpiresAt: s.ExpiresAt, LastAddr: s.LastAddr, LastUserAgent: s.LastAgent, LastClientID: s.LastClient,
			Connections: ss.connections(s.Hash)}
		if out[i].Connections == nil {
			out[i].Connections = []api.Connection{}
		}
	}
	return out, nil
}

// Revoke implements api.Sessions.
func (ss *sessions) Revoke(ctx context.Context, user, id string) error {
	return ss.accounts.RevokeSession(ctx, user, id)
}

// RevokeOthers implements api.Sessions.
func (ss *sessions) RevokeOthers(ctx context.Context, user, token string) (int, error) {
	return ss.accounts.RevokeOthers(ctx, user, token)
}

// ChangePassword implements api.Sessions.
func (ss *sessions) ChangePassword(ctx context.Context, user, token, oldPassword, newPassword string) (int, error) {
	return ss.accounts.ChangePassword(ctx, user, oldPassword, newPassword, token)
}

// DeleteAccount implements api.Sessions: the user leaves its groups (each
// records the departure, and every node applies it), then the account and
// its data go and its connections end everywhere.
func (ss *sessions) DeleteAccount(ctx context.Context, user, password string) error {
	if err := ss.accounts.VerifyPassword(ctx, user, password); err != nil {
		return err
	}
	if err := ss.groups.LeaveAll(ctx, user); err != nil {
		return err
	}
	return ss.accounts.DeleteUser(ctx, user)
}
