package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/parleychat/parley/groups"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Groups is what the API needs from groups.Service.
type Groups interface {
	Create(ctx context.Context, owner, name string, members []string, history string) (storage.Group, error)
	Get(ctx context.Context, caller, id string) (storage.Group, error)
	ForUser(ctx context.Context, user string) ([]storage.Group, error)
	AddMember(ctx context.Context, caller, id, user string) (storage.Group, error)
	RemoveMember(ctx context.Context, caller, id, user string) error
	Rename(ctx context.Context, caller, id, name string) (storage.Group, error)
	SetHistory(ctx context.Context, caller, id, history string) (storage.Group, error)
}

func (a *API) registerGroups() {
	if a.cfg.Groups == nil {
		return
	}
	a.mux.HandleFunc("POST /v1/groups", a.authed(a.createGroup))
	a.mux.HandleFunc("GET /v1/groups/{id}", a.authed(a.getGroup))
	a.mux.HandleFunc("PATCH /v1/groups/{id}", a.authed(a.updateGroup))
	a.mux.HandleFunc("POST /v1/groups/{id}/members", a.authed(a.addMember))
	a.mux.HandleFunc("DELETE /v1/groups/{id}/members/{user}", a.authed(a.removeMember))
	a.mux.HandleFunc("GET /v1/me/groups", a.authed(a.myGroups))
}

type groupView struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Owner     string            `json:"owner"`
	History   string            `json:"history"` // what members added later read: "join" (from their join) or "full"
	Members   []string          `json:"members"`
	Roles     map[string]string `json:"roles"`
	LastSeq   int64             `json:"last_seq"`
	ReadSeq   int64             `json:"read_seq"` // the caller's read cursor (GET /v1/me/groups)
	CreatedAt time.Time         `json:"created_at"`
}

func viewGroup(g storage.Group) groupView {
	v := groupView{ID: g.ID, Name: g.Name, Owner: g.Owner, History: g.History, Members: groups.Members(g), Roles: map[string]string{},
		LastSeq: g.LastSeq, CreatedAt: g.CreatedAt}
	for _, m := range g.Members {
		v.Roles[m.User] = m.Role
	}
	return v
}

// failGroup answers the groups package's errors, then the generic ones.
func (a *API) failGroup(w http.ResponseWriter, r *http.Request, err error) {
	var limited *groups.RateLimitedError
	switch {
	case errors.As(err, &limited):
		// Retry-After in whole seconds, rounded up [RFC 9110 10.2.3].
		w.Header().Set("Retry-After", strconv.FormatInt(int64((limited.Wait+time.Second-1)/time.Second), 10))
		writeError(w, http.StatusTooManyRequests, limited.Error())
	case errors.Is(err, groups.ErrForbidden), errors.Is(err, groups.ErrNotAccepted):
		writeError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, groups.ErrTooManyMembers):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, groups.ErrInvalidName), errors.Is(err, groups.ErrInvalidMember), errors.Is(err, groups.ErrInvalidHistory):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, storage.ErrExists):
		writeError(w, http.StatusConflict, "already a member")
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such group")
	default:
		a.fail(w, r, err)
	}
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request, user string) {
	var b struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
		History string   `json:"history"` // "join" (default) or "full"
	}
	if !decode(w, r, &b) {
		return
	}
	g, err := a.cfg.Groups.Create(r.Context(), user, b.Name, b.Members, b.History)
	if err != nil {
		a.failGroup(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, viewGroup(g))
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request, user string) {
	g, err := a.cfg.Groups.Get(r.Context(), user, r.PathValue("id"))
	if err != nil {
		a.failGroup(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewGroup(g))
}

// updateGroup changes a group's name (any member) and its history (the
// owner and admins), either or both. With both, a bad name or a caller who
// may not set the history changes nothing.
func (a *API) updateGroup(w http.ResponseWriter, r *http.Request, user string) {
	var b struct {
		Name    *string `json:"name"`
		History *string `json:"history"`
	}
	if !decode(w, r, &b) {
		return
	}
	if b.Name == nil && b.History == nil {
		writeError(w, http.StatusBadRequest, "give name, history or both")
		return
	}
	if b.Name != nil && b.History != nil {
		if _, ok := protocol.CleanName(*b.Name); !ok {
			a.failGroup(w, r, groups.ErrInvalidName)
			return
		}
	}
	var g storage.Group
	var err error
	if b.History != nil {
		g, err = a.cfg.Groups.SetHistory(r.Context(), user, r.PathValue("id"), *b.History)
	}
	if err == nil && b.Name != nil {
		g, err = a.cfg.Groups.Rename(r.Context(), user, r.PathValue("id"), *b.Name)
	}
	if err != nil {
		a.failGroup(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewGroup(g))
}

func (a *API) addMember(w http.ResponseWriter, r *http.Request, user string) {
	var b struct {
		User string `json:"user"`
	}
	if !decode(w, r, &b) {
		return
	}
	g, err := a.cfg.Groups.AddMember(r.Context(), user, r.PathValue("id"), b.User)
	if err != nil {
		a.failGroup(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewGroup(g))
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request, user string) {
	if err := a.cfg.Groups.RemoveMember(r.Context(), user, r.PathValue("id"), r.PathValue("user")); err != nil {
		a.failGroup(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) myGroups(w http.ResponseWriter, r *http.Request, user string) {
	gs, err := a.cfg.Groups.ForUser(r.Context(), user)
	if err != nil {
		a.failGroup(w, r, err)
		return
	}
	out := make([]groupView, len(gs))
	rs, _ := a.store.(interface {
		GetReadCursor(ctx context.Context, user, inbox, conv string) (int64, error)
	})
	for i, g := range gs {
		out[i] = viewGroup(g)
		if rs != nil {
			out[i].ReadSeq, _ = rs.GetReadCursor(r.Context(), user, "g/"+g.ID, "")
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": out})
}
