package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/parleychat/parley/auth"
)

// Sessions is what the account routes need: a user's sessions (access
// tokens) with the MQTT connections using them, ending them, changing the
// password and deleting the account. The broker implements it over
// auth.Service, groups and its connections, so that ending a session also
// ends its connections, on every node.
type Sessions interface {
	// Used records that token authenticated a request from addr
	// ("host:port") with the User-Agent agent: the session's last use,
	// which also extends its expiry. It does no I/O.
	Used(token, addr, agent string)
	// List returns user's sessions, token's marked current.
	List(ctx context.Context, user, token string) ([]Session, error)
	// Revoke ends user's session id (an error wrapping storage.ErrNotFound
	// when the user has none such) and its connections.
	Revoke(ctx context.Context, user, id string) error
	// RevokeOthers ends every session of user but token's, and their
	// connections, and returns how many sessions it ended.
	RevokeOthers(ctx context.Context, user, token string) (int, error)
	// ChangePassword checks the old password (auth.ErrBadCredentials),
	// sets the new one (auth.ErrWeakPassword) and ends every session of the
	// user but token's, returning how many.
	ChangePassword(ctx context.Context, user, token, oldPassword, newPassword string) (int, error)
	// DeleteAccount checks the password (auth.ErrBadCredentials) and
	// deletes the account: see auth.Service.DeleteUser.
	DeleteAccount(ctx context.Context, user, password string) error
}

// Session is one of a user's sessions: an access token, named by an id
// that is not the token.
type Session struct {
	ID         string    `json:"id"`
	Current    bool      `json:"current"` // the token of the request
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Where the last recorded use came from (recorded at most once a
	// minute): the client's address, and the HTTP User-Agent or the MQTT
	// client id.
	LastAddr      string `json:"last_addr,omitempty"`
	LastUserAgent string `json:"last_user_agent,omitempty"`
	LastClientID  string `json:"last_client_id,omitempty"`
	// Connections are the live MQTT connections authenticated with the
	// token, on the node answering.
	Connections []Connection `json:"connections"`
}

// Connection is a live MQTT connection of a session.
type Connection struct {
	ClientID string    `json:"client_id"`
	Node     string    `json:"node,omitempty"` // in a cluster
	Addr     string    `json:"addr"`
	Since    time.Time `json:"since"`
}

func (a *API) registerSessions() {
	if a.cfg.Sessions == nil {
		return
	}
	a.mux.HandleFunc("GET /v1/me/sessions", a.authed(a.listSessions))
	a.mux.HandleFunc("DELETE /v1/me/sessions", a.authed(a.revokeOtherSessions))
	a.mux.HandleFunc("DELETE /v1/me/sessions/{id}", a.authed(a.revokeSession))
	a.mux.HandleFunc("PUT /v1/me/password", a.authed(a.changePassword))
	a.mux.HandleFunc("DELETE /v1/me", a.authed(a.deleteAccount))
}

// bearer returns the request's token (authed checked it).
func bearer(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request, user string) {
	ss, err := a.cfg.Sessions.List(r.Context(), user, bearer(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ss == nil {
		ss = []Session{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": ss})
}

func (a *API) revokeSession(w http.ResponseWriter, r *http.Request, user string) {
	if err := a.cfg.Sessions.Revoke(r.Context(), user, r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) revokeOtherSessions(w http.ResponseWriter, r *http.Request, user string) {
	n, err := a.cfg.Sessions.RevokeOthers(r.Context(), user, bearer(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// failPassword answers a wrong password with 403, not 401: the caller's
// token is fine, and a client that signs out on 401 must not here.
func (a *API) failPassword(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, auth.ErrBadCredentials) {
		writeError(w, http.StatusForbidden, "wrong password")
		return
	}
	a.fail(w, r, err)
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request, user string) {
	var b struct {
		OldPassword string `json:"old_password"`
		NewPassword string `json:"new_password"`
	}
	if !decode(w, r, &b) {
		return
	}
	n, err := a.cfg.Sessions.ChangePassword(r.Context(), user, bearer(r), b.OldPassword, b.NewPassword)
	if err != nil {
		a.failPassword(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (a *API) deleteAccount(w http.ResponseWriter, r *http.Request, user string) {
	var b struct {
		Password string `json:"password"`
	}
	if !decode(w, r, &b) {
		return
	}
	if err := a.cfg.Sessions.DeleteAccount(r.Context(), user, b.Password); err != nil {
		a.failPassword(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
