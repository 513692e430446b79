package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Presence is what the presence routes need. hooks.Presence implements it:
// the live status is in the broker's memory, last_seen and privacy in the
// store, and it decides who may see whom.
type Presence interface {
	// Lookup returns the users' presence as viewer may see it, in order;
	// users viewer may not see have protocol.StatusHidden.
	Lookup(ctx context.Context, viewer string, users []string) ([]protocol.Presence, error)
	Privacy(ctx context.Context, user string) (string, error)
	SetPrivacy(ctx context.Context, user, privacy string) error
}

// maxPresenceUsers is the most users one GET /v1/presence may ask about.
const maxPresenceUsers = 100

func (a *API) registerPresence() {
	if a.cfg.Presence == nil {
		return
	}
	a.mux.HandleFunc("GET /v1/presence", a.authed(a.presence))
	a.mux.HandleFunc("GET /v1/me/presence", a.authed(a.myPresence))
	a.mux.HandleFunc("PUT /v1/me/presence", a.authed(a.setMyPresence))
}

// presence answers ?users=alice,bob with each user's presence, as on
// p/{user}: online and away with ts, offline with last_seen. Users the
// caller may not see are reported with status "hidden", and so are unknown
// users, so that the answer does not tell which ids exist.
func (a *API) presence(w http.ResponseWriter, r *http.Request, user string) {
	raw := r.URL.Query().Get("users")
	var users []string
	seen := map[string]bool{}
	for _, id := range strings.Split(raw, ",") {
		id = strings.TrimSpace(id)
		if id == "" || seen[id] {
			continue
		}
		if !protocol.ValidID(id) {
			writeError(w, http.StatusBadRequest, "invalid user id "+strconv.Quote(id))
			return
		}
		seen[id] = true
		users = append(users, id)
	}
	switch {
	case len(users) == 0:
		writeError(w, http.StatusBadRequest, "users is required: ?users=alice,bob")
		return
	case len(users) > maxPresenceUsers:
		writeError(w, http.StatusBadRequest, "at most "+strconv.Itoa(maxPresenceUsers)+" users per request")
		return
	}
	ps, err := a.cfg.Presence.Lookup(r.Context(), user, users)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": ps})
}

type privacyBody struct {
	Privacy string `json:"privacy"`
}

func (a *API) myPresence(w http.ResponseWriter, r *http.Request, user string) {
	p, err := a.cfg.Presence.Privacy(r.Context(), user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, privacyBody{Privacy: p})
}

// setMyPresence sets who may see the caller's presence. Subscriptions the
// new setting does not allow end at once.
func (a *API) setMyPresence(w http.ResponseWriter, r *http.Request, user string) {
	var b privacyBody
	if !decode(w, r, &b) {
		return
	}
	if !storage.ValidPrivacy(b.Privacy) {
		writeError(w, http.StatusBadRequest, "privacy must be everyone, contacts or nobody")
		return
	}
	if err := a.cfg.Presence.SetPrivacy(r.Context(), user, b.Privacy); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}
