package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/parleychat/parley/consent"
	"github.com/parleychat/parley/storage"
)

// Consent is what the consent routes need (consent.Service): block lists,
// contact lists, and who may add a user to groups.
type Consent interface {
	Block(ctx context.Context, user, peer string) error
	Unblock(ctx context.Context, user, peer string) error
	Blocks(ctx context.Context, user string) ([]storage.Peer, error)
	PutContact(ctx context.Context, user, contact string) error
	DeleteContact(ctx context.Context, user, contact string) error
	Contacts(ctx context.Context, user string) ([]storage.Peer, error)
	SetGroupAdds(ctx context.Context, user, setting string) error
	GroupAdds(ctx context.Context, user string) (string, error)
}

func (a *API) registerConsent() {
	if a.cfg.Consent == nil {
		return
	}
	a.mux.HandleFunc("GET /v1/me/blocks", a.authed(a.peerList(a.cfg.Consent.Blocks, "blocks")))
	a.mux.HandleFunc("PUT /v1/me/blocks/{user}", a.authed(a.peerChange(a.cfg.Consent.Block)))
	a.mux.HandleFunc("DELETE /v1/me/blocks/{user}", a.authed(a.peerChange(a.cfg.Consent.Unblock)))
	a.mux.HandleFunc("GET /v1/me/contacts", a.authed(a.peerList(a.cfg.Consent.Contacts, "contacts")))
	a.mux.HandleFunc("PUT /v1/me/contacts/{user}", a.authed(a.peerChange(a.cfg.Consent.PutContact)))
	a.mux.HandleFunc("DELETE /v1/me/contacts/{user}", a.authed(a.peerChange(a.cfg.Consent.DeleteContact)))
	a.mux.HandleFunc("GET /v1/me/consent", a.authed(a.getConsent))
	a.mux.HandleFunc("PUT /v1/me/consent", a.authed(a.setConsent))
}

type peerView struct {
	User string    `json:"user"`
	At   time.Time `json:"at"`
}

// peerList answers a list of users: {"blocks": [{"user", "at"}, …]}.
func (a *API) peerList(list func(ctx context.Context, user string) ([]storage.Peer, error), key string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, user string) {
		ps, err := list(r.Context(), user)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out := make([]peerView, len(ps))
		for i, p := range ps {
			out[i] = peerView{User: p.User, At: p.At}
		}
		writeJSON(w, http.StatusOK, map[string]any{key: out})
	}
}

// peerChange applies a change naming {user} of the path: 204, or 400 for
// oneself or a bad id, 404 for an unknown or deleted user.
func (a *API) peerChange(change func(ctx context.Context, user, peer string) error) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, user string) {
		err := change(r.Context(), user, r.PathValue("user"))
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.Is(err, consent.ErrSelf), errors.Is(err, consent.ErrInvalidUser):
			writeError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, storage.ErrNotFound):
			writeError(w, http.StatusNotFound, "no such user")
		default:
			a.fail(w, r, err)
		}
	}
}

type consentBody struct {
	// GroupAdds: who may add the user to groups: everyone (not blocked),
	// contacts (in the user's contact list), nobody.
	GroupAdds string `json:"group_adds"`
}

func (a *API) getConsent(w http.ResponseWriter, r *http.Request, user string) {
	g, err := a.cfg.Consent.GroupAdds(r.Context(), user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, consentBody{GroupAdds: g})
}

func (a *API) setConsent(w http.ResponseWriter, r *http.Request, user string) {
	var b consentBody
	if !decode(w, r, &b) {
		return
	}
	if err := a.cfg.Consent.SetGroupAdds(r.Context(), user, b.GroupAdds); err != nil {
		if errors.Is(err, consent.ErrInvalidSetting) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}
