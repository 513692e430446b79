// Package brokertest starts real Parley nodes for tests: a real store, the
// broker listening on free loopback ports, and helpers that sign users up
// over HTTP and connect real MQTT clients (v5 through paho.golang, v3.1.1
// through paho.mqtt.golang) over real sockets.
package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/sqlite"
)

// Admin is the administrator every test node has.
const (
	Admin         = "admin"
	AdminPassword = "admin-secret"
)

// Node is a running Parley node.
type Node struct {
	T      testing.TB
	Srv    *broker.Server
	Store  storage.Store
	DBURL  string
	Kind   string // the store kind
	MQTT   string // host:port
	WS     string // host:port
	HTTP   string // http://host:port
	Name   string // the node's name in a cluster
	closed bool
}

// Store kinds a test node can run on.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// Stores lists the store kinds end-to-end tests run against.
var Stores = []string{Postgres, SQLite}

// Options tune a test node.
type Options struct {
	// Store is Postgres (the default) or SQLite.
	Store string
	// DBURL reuses a database (a Postgres URL, or a SQLite file path) to
	// restart a node on the same data; empty creates a fresh one.
	DBURL string
	// OpenStore opens the store; default: the Store kind at DBURL.
	OpenStore func(t testing.TB, url string) storage.Store
	// Config is the broker configuration; addresses are set to free ports.
	Config broker.Config
	// Push, if set, turns push notifications on with this sender, and the
	// default store queues push jobs.
	Push push.Sender
	// Quiet discards the node's logs instead of writing them to the test's
	// log: a fuzz target must not log through its testing.F.
	Quiet bool
	// Accounts, if set, adjusts the accounts' configuration (the throttle
	// of password checks, administrators, registration) before the node
	// starts.
	Accounts func(*auth.Config)
}

// Start starts a node on 127.0.0.1 with free ports and stops it when the
// test ends.
func Start(t testing.TB, o Options) *Node {
	t.Helper()
	logger := func(component string) *slog.Logger {
		if o.Quiet {
			return slog.New(slog.DiscardHandler)
		}
		return Logger(t, component)
	}
	if o.Store == SQLite {
		if o.DBURL == "" {
			o.DBURL = filepath.Join(t.TempDir(), "parley.db")
		}
		if o.OpenStore == nil {
			o.OpenStore = func(t testing.TB, path string) storage.Store {
				s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path, PushJobs: o.Push != nil}, logger("store"))
				if err != nil {
					t.Fatalf("open store: %v", err)
				}
				return s
			}
		}
	}
	if o.DBURL == "" {
		o.DBURL = pgtest.NewDatabase(t)
	}
	if o.OpenStore == nil {
		o.OpenStore = func(t testing.TB, url string) storage.Store {
			// Timeouts scaled like every deadline here: on a loaded machine
			// (another test run's CREATE and DROP DATABASE checkpoints) one
			// statement can take seconds, and a store that gives up fails
			// the publish (0x80) rather than the test's assertion.
			s, err := postgres.Open(context.Background(), postgres.Config{URL: url, OpTimeout: Patience(3 * time.Second),
				ConnectTimeout: Patience(time.Second), PushJobs: o.Push != nil}, logger("store"))
			if err != nil {
				t.Fatalf("open store: %v", err)
			}
			return s
		}
	}
	st := o.OpenStore(t, o.DBURL)
	acfg := auth.Config{OpenRegistration: true, Admins: map[string]string{Admin: AdminPassword},
		BcryptCost: 4, Log: logger("auth")}
	if o.Accounts != nil {
		o.Accounts(&acfg)
	}
	accounts, err := auth.New(acfg, st)
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.Config
	cfg.MQTTAddr, cfg.WSAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.Inbox.StoreTimeout == 0 {
		cfg.Inbox.StoreTimeout = Patience(5 * time.Second)
	}
	if cfg.Inbox.Rate == 0 {
		cfg.Inbox.Rate = -1
	}
	// Every test client connects from 127.0.0.1: no per-address limits
	// unless the test sets them.
	if cfg.MaxConnectionsPerIP == 0 {
		cfg.MaxConnectionsPerIP = -1
	}
	if cfg.ConnectRatePerIP == 0 {
		cfg.ConnectRatePerIP = -1
	}
	srv, err := broker.New(cfg, broker.Deps{Store: st, Accounts: accounts, Log: logger("parley"), Push: o.Push})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := &Node{T: t, Srv: srv, Store: st, DBURL: o.DBURL, Kind: o.Store, MQTT: srv.MQTTAddr(), WS: srv.WSAddr(), HTTP: "http://" + srv.HTTPAddr()}
	t.Cleanup(n.Stop)
	return n
}

// NewDatabase creates a fresh Postgres database for the test, dropped when it
// ends, and returns its URL.
func NewDatabase(t testing.TB) string { return pgtest.NewDatabase(t) }

// Remote returns a Node for a Parley running elsewhere (another process),
// for the client helpers. It has no Srv or Store.
func Remote(t testing.TB, mqttAddr, httpURL string) *Node {
	return &Node{T: t, MQTT: mqttAddr, HTTP: httpURL, closed: true}
}

// Stop drains the node and closes its store. Safe to call twice.
func (n *Node) Stop() {
	if n.closed {
		return
	}
	n.closed = true
	n.Srv.Close()
	n.Store.Close()
}

// Logger returns a logger writing to the test's log at debug level.
func Logger(t testing.TB, component string) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("PARLEY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})).With("c", component)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// HTTPDo sends a JSON request and decodes a JSON answer into out (if not
// nil). It returns the status code.
func (n *Node) HTTPDo(method, path, bearer string, body, out any) int {
	n.T.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			n.T.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.HTTP+path, rd)
	if err != nil {
		n.T.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			n.T.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// AdminGet sends GET path with the administrator's credentials and decodes
// the JSON answer into out. It returns the status code.
func (n *Node) AdminGet(path string, out any) int {
	n.T.Helper()
	req, err := http.NewRequest("GET", n.HTTP+path, nil)
	if err != nil {
		n.T.Fatal(err)
	}
	req.SetBasicAuth(Admin, AdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.T.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil && resp.StatusCode == 200 {
		n.T.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode
}

// User signs a user up and returns its token.
func (n *Node) User(id string) string {
	n.T.Helper()
	var out struct{ Token string }
	if code := n.HTTPDo("POST", "/v1/users", "", map[string]string{"id": id, "password": "password-" + id, "name": "User " + id}, &out); code != 201 {
		n.T.Fatalf("sign up %s: status %d", id, code)
	}
	return out.Token
}

// Login returns a new token of an existing user.
func (n *Node) Login(id string) string {
	n.T.Helper()
	var out struct{ Token string }
	if code := n.HTTPDo("POST", "/v1/tokens", "", map[string]string{"id": id, "password": "password-" + id}, &out); code != 200 {
		n.T.Fatalf("log in %s: status %d", id, code)
	}
	return out.Token
}

// Ctx returns a context that ends with the test or after d.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Patience(d))
	t.Cleanup(cancel)
	return ctx
}

// Patience returns d scaled by the test patience factor
// (PARLEY_TEST_PATIENCE, see internal/testwait): the deadline to give a wait
// that would take at most d on an idle machine. Every helper here uses it.
func Patience(d time.Duration) time.Duration { return testwait.Patience(d) }

func must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// WaitGone waits until the node has handled the disconnect of clientID:
// no live connection holds it any more.
func (n *Node) WaitGone(t testing.TB, clientID string) {
	t.Helper()
	testwait.Until(t, 5*time.Second, clientID+" disconnected", func() bool { return !n.Srv.Connected(clientID) })
}

// WaitCursor waits until the store holds clientID's cursor on inbox at seq
// or beyond: the device's acknowledgements up to seq reached the server and
// were written.
func (n *Node) WaitCursor(t testing.TB, clientID, inbox string, seq int64) {
	t.Helper()
	testwait.Until(t, 5*time.Second, fmt.Sprintf("cursor of %s on %s at %d", clientID, inbox, seq), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := n.Store.GetCursor(ctx, clientID, inbox)
		return err == nil && c >= seq
	})
}
