// Package api is Parley's HTTP JSON API: accounts and tokens, message
// history, administrators' bulk provisioning, and the health, readiness and
// metrics endpoints. docs/protocol.md documents every route.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Accounts is what the API needs from auth.Service.
type Accounts interface {
	Register(ctx context.Context, id, password, name string) (string, error)
	Login(ctx context.Context, id, password string) (string, error)
	// LoginFrom is Login throttled and audited per client address and
	// listener; a throttled attempt is an *auth.ThrottledError.
	LoginFrom(ctx context.Context, id, password, listener, addr string) (string, error)
	IssueToken(ctx context.Context, id string) (string, error)
	TokenUser(ctx context.Context, token string) (string, error)
	Revoke(ctx context.Context, token string) error
	CheckAdmin(id, password string) bool
	// CheckAdminFrom is CheckAdmin throttled and audited: nil,
	// auth.ErrBadCredentials or an *auth.ThrottledError.
	CheckAdminFrom(id, password, listener, addr string) error
	IsAdmin(id string) bool
	OpenRegistration() bool
}

// Store is what the API reads directly from storage.
type Store interface {
	GetUser(ctx context.Context, id string) (storage.User, error)
	Read(ctx context.Context, inbox string, after int64, limit int) ([]protocol.Entry, error)
	ReadBefore(ctx context.Context, inbox string, before int64, limit int) ([]protocol.Entry, error)
	LastSeq(ctx context.Context, inbox string) (int64, error)
	GetMembership(ctx context.Context, group, user string) (storage.Membership, error)
	Ping(ctx context.Context) error
}

// Config configures the API.
type Config struct {
	// Metrics serves /metrics. Optional.
	Metrics http.Handler
	// Ready adds checks to /readyz beyond the store's Ping (the node's
	// listeners); its error is logged, and the client told only that the
	// listeners are failing. Optional.
	Ready func(ctx context.Context) error
	// Degraded names parts the node serves without (the cluster bus): the
	// node is ready, and /readyz says what it lacks.
	Degraded func(ctx context.Context) []string
	// Cluster describes the cluster for GET /v1/cluster (administrators):
	// the nodes, their connections and their bus status. nil: a single
	// node, described by Node.
	Cluster func() any
	// Static serves everything not under /v1 (the web app). Optional.
	Static http.Handler
	// Timeout bounds each request's store work. Default 10s.
	Timeout time.Duration
	// Groups serves the /v1/groups routes. Optional.
	Groups Groups
	// Push serves /v1/devices, /v1/me/push and /v1/me/mutes. Optional: nil
	// when push notifications are off.
	Push PushStore
	// MaxPushDevices is the most push tokens one user keeps: registering
	// one more deletes the user's least recently updated. Default 10.
	MaxPushDevices int
	// Presence serves /v1/presence and /v1/me/presence. Optional.
	Presence Presence
	// Consent serves /v1/me/blocks, /v1/me/contacts and /v1/me/consent.
	// Optional.
	Consent Consent
	// Sessions serves /v1/me/sessions, /v1/me/password and DELETE /v1/me,
	// and records the uses of tokens. Optional.
	Sessions Sessions
	// AdminListener serves administrators (/v1/admin/…, /v1/cluster, the
	// Basic auth that registers users when registration is closed) only
	// through the handler Admin returns, for a private listener; the API
	// itself answers 404 to them. Default false: the API serves them.
	AdminListener bool
}

// API is the HTTP handler.
type API struct {
	cfg      Config
	accounts Accounts
	store    Store
	log      *slog.Logger
	mux      *http.ServeMux
}

// New returns the API handler.
func New(cfg Config, accounts Accounts, store Store, log *slog.Logger) *API {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxPushDevices <= 0 {
		cfg.MaxPushDevices = 10
	}
	a := &API{cfg: cfg, accounts: accounts, store: store, log: log, mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /v1/users", a.createUser)
	a.mux.HandleFunc("POST /v1/tokens", a.createToken)
	a.mux.HandleFunc("DELETE /v1/tokens/current", a.authed(a.deleteToken))
	a.mux.HandleFunc("GET /v1/me", a.authed(a.me))
	a.mux.HandleFunc("GET /v1/users/{id}", a.authed(a.getUser))
	a.mux.HandleFunc("GET /v1/messages", a.authed(a.messages))
	a.mux.HandleFunc("POST /v1/admin/users", a.admin(a.bulkUsers))
	a.mux.HandleFunc("GET /v1/cluster", a.admin(a.cluster))
	a.registerGroups()
	a.registerConversations()
	a.registerPresence()
	a.registerPush()
	a.registerConsent()
	a.registerSessions()
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	a.mux.HandleFunc("GET /readyz", a.readyz)
	if cfg.Metrics != nil {
		a.mux.Handle("GET /metrics", cfg.Metrics)
	}
	a.mux.HandleFunc("/v1/", func(w http.ResponseWriter, _ *http.Request) { writeError(w, 404, "no such endpoint") })
	if cfg.Static != nil {
		a.mux.Handle("/", cfg.Static)
	}
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	a.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// clientErrors are the errors whose own text a client is shown, with
// their status. The sentinel's text is sent, never the wrapped error's,
// whose prefixes may name internals.
var clientErrors = []struct {
	err    error
	status int
}{
	{auth.ErrExists, http.StatusConflict},
	{auth.ErrInvalidID, http.StatusBadRequest},
	{auth.ErrPasswordLength, http.StatusBadRequest}, // the reasons before ErrWeakPassword, which each is
	{auth.ErrPasswordBlank, http.StatusBadRequest},
	{auth.ErrPasswordCommon, http.StatusBadRequest},
	{auth.ErrWeakPassword, http.StatusBadRequest},
	{auth.ErrInvalidName, http.StatusBadRequest},
	{auth.ErrNameLikeID, http.StatusBadRequest},
	{auth.ErrRegistrationClosed, http.StatusForbidden},
}

// clientError returns the sentinel of clientErrors that err wraps, and its
// status; a nil sentinel when err wraps none of them.
func clientError(err error) (status int, sentinel error) {
	for _, c := range clientErrors {
		if errors.Is(err, c.err) {
			return c.status, c.err
		}
	}
	return 0, nil
}

// fail answers a store or account error, hiding internals from the client:
// only the sentinels of clientErrors are shown as they are; anything else
// is a generic message, its detail logged here.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if status, sentinel := clientError(err); sentinel != nil {
		writeError(w, status, sentinel.Error())
		return
	}
	var throttled *auth.ThrottledError
	switch {
	case errors.As(err, &throttled):
		// Retry-After in whole seconds, rounded up [RFC 9110 10.2.3].
		w.Header().Set("Retry-After", strconv.FormatInt(int64((throttled.Wait+time.Second-1)/time.Second), 10))
		writeError(w, http.StatusTooManyRequests, "too many failed attempts, try again later")
	case errors.Is(err, auth.ErrBadCredentials):
		writeError(w, http.StatusUnauthorized, "bad credentials")
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, storage.ErrInvalid):
		// Input the store cannot hold (a NUL, an over-long key) that the
		// handler's own checks let through: the client's to fix.
		writeError(w, http.StatusBadRequest, "invalid input")
	case errors.Is(err, storage.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, "store unavailable, try again")
	default:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// maxBody bounds a request body (ServeHTTP); past it a JSON endpoint
// answers 413.
const maxBody = 1 << 20

// decode reads a JSON body into v, or answers the error: 413 past maxBody,
// 400 with the decoder's message for a body that is not the JSON expected
// (it describes the client's input), 400 with a generic message otherwise
// (a read error, such as the read timeout, names addresses).
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large (limit "+strconv.Itoa(maxBody)+" bytes)")
	case errors.As(err, &syntax), errors.As(err, &typ), strings.HasPrefix(err.Error(), "json: unknown field "):
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "invalid JSON body: empty")
	default:
		writeError(w, http.StatusBadRequest, "invalid JSON body")
	}
	return false
}

// authed requires a bearer token.
func (a *API) authed(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.Timeout)
		defer cancel()
		user, err := a.accounts.TokenUser(ctx, token)
		if err != nil {
			if errors.Is(err, auth.ErrBadCredentials) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
			}
			a.fail(w, r, err)
			return
		}
		if a.cfg.Sessions != nil {
			a.cfg.Sessions.Used(token, r.RemoteAddr, r.UserAgent())
		}
		next(w, r.WithContext(ctx), user)
	}
}

// admin requires HTTP Basic credentials of an administrator, on the
// administrators' listener when there is one (404 elsewhere). Attempts are
// throttled (429 with Retry-After) and failures audited.
func (a *API) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.adminHere(r) {
			writeError(w, http.StatusNotFound, "no such endpoint")
			return
		}
		id, pw, ok := r.BasicAuth()
		var err error = auth.ErrBadCredentials
		if ok {
			err = a.accounts.CheckAdminFrom(id, pw, listenerOf(r), r.RemoteAddr)
		}
		if errors.Is(err, auth.ErrThrottled) {
			a.fail(w, r, err)
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="parley admin"`)
			writeError(w, http.StatusUnauthorized, "administrator credentials required")
			return
		}
		next(w, r)
	}
}

type adminListenerKey struct{}

// Admin returns the handler of the administrators' private listener
// (Config.AdminListener): the whole API, administrators' routes included.
func (a *API) Admin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), adminListenerKey{}, true)))
	})
}

// adminHere reports whether r may use administrators' credentials: always,
// unless they have a listener of their own and r did not come through it.
func (a *API) adminHere(r *http.Request) bool {
	return !a.cfg.AdminListener || r.Context().Value(adminListenerKey{}) != nil
}

// listenerOf names the listener r came through, for the audit log and the
// metrics: "admin" (Admin) or "http".
func listenerOf(r *http.Request) string {
	if r.Context().Value(adminListenerKey{}) != nil {
		return "admin"
	}
	return "http"
}

type userBody struct {
	ID       string `json:"id"`
	Password string `json:"password"`
	Name     string `json:"name,omitempty"`
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	if !a.accounts.OpenRegistration() {
		id, pw, ok := r.BasicAuth()
		var err error = auth.ErrRegistrationClosed
		if ok && a.adminHere(r) {
			err = a.accounts.CheckAdminFrom(id, pw, listenerOf(r), r.RemoteAddr)
		}
		if errors.Is(err, auth.ErrBadCredentials) {
			err = auth.ErrRegistrationClosed
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
	}
	var b userBody
	if !decode(w, r, &b) {
		return
	}
	token, err := a.accounts.Register(r.Context(), b.ID, b.Password, b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	name := b.Name
	if name == "" {
		name = b.ID
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": b.ID, "name": name, "token": token})
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var b userBody
	if !decode(w, r, &b) {
		return
	}
	token, err := a.accounts.LoginFrom(r.Context(), b.ID, b.Password, listenerOf(r), r.RemoteAddr)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token})
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request, _ string) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if err := a.accounts.Revoke(r.Context(), token); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type userView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Deleted   bool      `json:"deleted,omitempty"` // a deleted account (its name is storage.DeletedUserName)
}

func (a *API) me(w http.ResponseWriter, r *http.Request, user string) {
	a.writeUser(w, r, user)
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, _ string) {
	a.writeUser(w, r, r.PathValue("id"))
}

func (a *API) writeUser(w http.ResponseWriter, r *http.Request, id string) {
	u, err := a.store.GetUser(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, userView{ID: u.ID, Name: u.Name, CreatedAt: u.CreatedAt, Deleted: u.Deleted()})
}

// messages pages through an inbox the caller owns:
// ?inbox=u/bob&after=41&limit=100 (oldest first after a seq),
// ?before=42 (the page just below a seq), or neither (the newest page).
// "more" says whether entries exist beyond the page in the paging direction
// that the caller may read.
func (a *API) messages(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	inbox := q.Get("inbox")
	if inbox == "" {
		inbox = protocol.UserInbox(user)
	}
	t, ok := protocol.ParseTopic(inbox)
	if !ok || (t.Kind != protocol.KindUser && t.Kind != protocol.KindGroup) {
		writeError(w, http.StatusBadRequest, "inbox must be u/{user} or g/{group}")
		return
	}
	// A group member reads from its join (storage.Membership.FromSeq), a
	// former one up to its removal.
	var from, upTo int64
	switch {
	case t.Kind == protocol.KindUser && t.ID != user:
		writeError(w, http.StatusForbidden, "only the owner may read an inbox")
		return
	case t.Kind == protocol.KindGroup:
		m, err := a.store.GetMembership(r.Context(), t.ID, user)
		if errors.Is(err, storage.ErrNotFound) {
			writeError(w, http.StatusForbidden, "only members may read a group")
			return
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if !m.Current {
			upTo = m.RemovedSeq
		}
		from = m.FromSeq
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	num := func(name string) (int64, bool, bool) {
		s := q.Get(name)
		if s == "" {
			return 0, false, true
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, name+" must be a seq (0 or more)")
			return 0, false, false
		}
		return n, true, true
	}
	after, hasAfter, ok1 := num("after")
	before, hasBefore, ok2 := num("before")
	if !ok1 || !ok2 {
		return
	}
	if hasAfter && hasBefore {
		writeError(w, http.StatusBadRequest, "give after or before, not both")
		return
	}
	var es []protocol.Entry
	var err error
	more := false
	switch {
	case hasAfter:
		if from > 0 && after < from-1 {
			after = from - 1
		}
		es, err = a.store.Read(r.Context(), inbox, after, limit+1)
		if len(es) > limit {
			es, more = es[:limit], true
		}
	default:
		if !hasBefore {
			var last int64
			last, err = a.store.LastSeq(r.Context(), inbox)
			before = last + 1
		}
		if upTo > 0 && before > upTo+1 {
			before = upTo + 1
		}
		if err == nil && before > from {
			es, err = a.store.ReadBefore(r.Context(), inbox, before, limit+1)
			// Paging back stops at the member's join.
			if i := firstFrom(es, from); i > 0 {
				es = es[i:]
			} else if len(es) > limit {
				es, more = es[1:], true
			}
		}
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if upTo > 0 && hasAfter {
		// Paging forward stops at the member's removal.
		for len(es) > 0 && es[len(es)-1].Seq > upTo {
			es, more = es[:len(es)-1], false
		}
	}
	b := []byte(`{"inbox":`)
	b = strconv.AppendQuote(b, inbox)
	b = append(b, `,"entries":[`...)
	for i := range es {
		if i > 0 {
			b = append(b, ',')
		}
		b = es[i].AppendJSON(b)
	}
	b = append(b, `],"more":`...)
	b = strconv.AppendBool(b, more)
	b = append(b, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// firstFrom returns the index of the first of es (in seq order) at or after
// seq from.
func firstFrom(es []protocol.Entry, from int64) int {
	for i, e := range es {
		if e.Seq >= from {
			return i
		}
	}
	return len(es)
}

// bulkUsers provisions many users at once (load tests, imports): new users
// are created, with a first token. An existing account is reported as
// "exists", without a token: the password sent is not checked, and a token
// of someone else's account is not the administrator's to take.
func (a *API) bulkUsers(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Users []userBody `json:"users"`
	}
	if !decode(w, r, &b) {
		return
	}
	if len(b.Users) > 10000 {
		writeError(w, http.StatusBadRequest, "at most 10000 users per request")
		return
	}
	type result struct {
		ID    string `json:"id"`
		Token string `json:"token,omitempty"`
		Error string `json:"error,omitempty"`
	}
	out := make([]result, 0, len(b.Users))
	for _, u := range b.Users {
		token, err := a.accounts.Register(r.Context(), u.ID, u.Password, u.Name)
		if errors.Is(err, auth.ErrExists) {
			out = append(out, result{ID: u.ID, Error: "exists"})
			continue
		}
		if err != nil {
			_, sentinel := clientError(err)
			if sentinel == nil {
				// The store failing is the whole request's failure; its
				// text is not the client's to see.
				a.fail(w, r, err)
				return
			}
			out = append(out, result{ID: u.ID, Error: sentinel.Error()})
			continue
		}
		out = append(out, result{ID: u.ID, Token: token})
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// readyz answers 200 when the store answers and the Ready checks pass,
// 503 otherwise. The body names the failing check, never the error: a
// store's error can hold its address, user or SQL. The detail is logged.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		a.log.Warn("not ready: store", "error", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "failing": "store"})
		return
	}
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(ctx); err != nil {
			a.log.Warn("not ready", "error", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "failing": "listeners"})
			return
		}
	}
	if a.cfg.Degraded != nil {
		if parts := a.cfg.Degraded(ctx); len(parts) > 0 {
			writeJSON(w, http.StatusOK, map[string]any{"status": "degraded", "degraded": parts})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// cluster answers GET /v1/cluster (administrators): the nodes as this node
// knows them from their heartbeats.
func (a *API) cluster(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.Cluster == nil {
		writeJSON(w, http.StatusOK, map[string]any{"clustered": false})
		return
	}
	writeJSON(w, http.StatusOK, a.cfg.Cluster())
}
