package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// PushStore is what the push routes need: tokens, settings and mutes.
// storage.Store implements it.
type PushStore interface {
	PutPushDevice(ctx context.Context, d storage.PushDevice, maxDevices int) error
	PushDevices(ctx context.Context, user string) ([]storage.PushDevice, error)
	DeletePushDevice(ctx context.Context, user, token string) error
	SetPushPreview(ctx context.Context, user string, on bool) error
	SetPushMute(ctx context.Context, user, conv string, until time.Time) error
	DeletePushMute(ctx context.Context, user, conv string) error
	PushProfile(ctx context.Context, user string) (storage.PushProfile, error)
}

// maxPushToken bounds a device token (APNs tokens are 64 hex digits today,
// FCM registration tokens about 160 characters): the store indexes tokens,
// and holds keys of at most storage.MaxKeyBytes.
const maxPushToken = storage.MaxKeyBytes

func (a *API) registerPush() {
	if a.cfg.Push == nil {
		return
	}
	a.mux.HandleFunc("POST /v1/devices", a.authed(a.putDevice))
	a.mux.HandleFunc("GET /v1/devices", a.authed(a.listDevices))
	a.mux.HandleFunc("DELETE /v1/devices/{token}", a.authed(a.deleteDevice))
	a.mux.HandleFunc("GET /v1/me/push", a.authed(a.pushSettings))
	a.mux.HandleFunc("PUT /v1/me/push", a.authed(a.setPushSettings))
	a.mux.HandleFunc("PUT /v1/me/mutes/{inbox...}", a.authed(a.mute))
	a.mux.HandleFunc("DELETE /v1/me/mutes/{inbox...}", a.authed(a.unmute))
}

type deviceBody struct {
	Platform    string `json:"platform"`
	Token       string `json:"token"`
	Device      string `json:"device,omitempty"`
	Environment string `json:"environment,omitempty"`
	// Session is the id of the session that registered the token (as
	// GET /v1/me/sessions names it): ending that session unregisters the
	// token. Set by the server (a token is bound to the request's session);
	// a value sent is ignored, as updated_at is.
	Session   string     `json:"session,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

func toDeviceBody(d storage.PushDevice) deviceBody {
	t := d.UpdatedAt.UTC()
	b := deviceBody{Platform: d.Platform, Token: d.Token, Device: d.Device, Environment: d.Environment, UpdatedAt: &t}
	if len(d.Session) > 0 {
		b.Session = auth.SessionID(d.Session)
	}
	return b
}

// errPushTokenTaken is the answer to a registration of another account's
// push token.
const errPushTokenTaken = "push token is registered to another account; sign out there first"

// putDevice registers or refreshes a push token for the caller, bound to
// the request's session (its access token), and evicts the caller's least
// recently updated tokens past MaxPushDevices. A token that another
// account's session registered is refused (409) while that session lives:
// knowing a device token must not be enough to receive its owner's
// notifications.
func (a *API) putDevice(w http.ResponseWriter, r *http.Request, user string) {
	var b deviceBody
	if !decode(w, r, &b) {
		return
	}
	switch {
	case b.Platform != "apns" && b.Platform != "fcm":
		writeError(w, http.StatusBadRequest, "platform must be apns or fcm")
		return
	case b.Token == "":
		writeError(w, http.StatusBadRequest, "token is required")
		return
	case len(b.Token) > maxPushToken:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("token is longer than %d bytes", maxPushToken))
		return
	case b.Environment != "" && b.Environment != "production" && b.Environment != "sandbox":
		writeError(w, http.StatusBadRequest, "environment must be production or sandbox")
		return
	case len(b.Device) > 200:
		writeError(w, http.StatusBadRequest, "device is too long")
		return
	}
	if b.Platform == "fcm" {
		b.Environment = ""
	}
	session := auth.HashToken(bearer(r))
	d := storage.PushDevice{Token: b.Token, User: user, Platform: b.Platform, Environment: b.Environment, Device: b.Device,
		Session: session[:]}
	err := a.cfg.Push.PutPushDevice(r.Context(), d, a.cfg.MaxPushDevices)
	if errors.Is(err, storage.ErrPushTokenTaken) {
		a.log.Info("push token refused: registered to another account", "user", user, "platform", b.Platform)
		writeError(w, http.StatusConflict, errPushTokenTaken)
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	b.Session, b.UpdatedAt = auth.SessionID(session[:]), nil
	writeJSON(w, http.StatusOK, b)
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request, user string) {
	ds, err := a.cfg.Push.PushDevices(r.Context(), user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]deviceBody, 0, len(ds))
	for _, d := range ds {
		out = append(out, toDeviceBody(d))
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request, user string) {
	if err := a.cfg.Push.DeletePushDevice(r.Context(), user, r.PathValue("token")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type muteBody struct {
	Inbox string     `json:"inbox"`
	Until *time.Time `json:"until,omitempty"`
}

type pushSettingsBody struct {
	Preview *bool      `json:"preview"`
	Mutes   []muteBody `json:"mutes,omitempty"`
}

func (a *API) pushSettings(w http.ResponseWriter, r *http.Request, user string) {
	p, err := a.cfg.Push.PushProfile(r.Context(), user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := time.Now()
	b := pushSettingsBody{Preview: &p.Preview, Mutes: []muteBody{}}
	for conv, until := range p.Mutes {
		if !p.Muted(conv, now) {
			continue
		}
		m := muteBody{Inbox: conv}
		if !until.IsZero() {
			u := until.UTC()
			m.Until = &u
		}
		b.Mutes = append(b.Mutes, m)
	}
	sort.Slice(b.Mutes, func(i, j int) bool { return b.Mutes[i].Inbox < b.Mutes[j].Inbox })
	writeJSON(w, http.StatusOK, b)
}

func (a *API) setPushSettings(w http.ResponseWriter, r *http.Request, user string) {
	var b pushSettingsBody
	if !decode(w, r, &b) {
		return
	}
	if b.Preview == nil || b.Mutes != nil {
		writeError(w, http.StatusBadRequest, `body must be {"preview": true|false}`)
		return
	}
	if err := a.cfg.Push.SetPushPreview(r.Context(), user, *b.Preview); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"preview": *b.Preview})
}

// conversationOf checks a mute's path: "g/{group}" or "u/{peer}".
func conversationOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	conv := r.PathValue("inbox")
	t, ok := protocol.ParseTopic(conv)
	if !ok || (t.Kind != protocol.KindUser && t.Kind != protocol.KindGroup) {
		writeError(w, http.StatusBadRequest, "inbox must be g/{group} or u/{user}")
		return "", false
	}
	return conv, true
}

// mute mutes a conversation, for ever or until the body's until.
func (a *API) mute(w http.ResponseWriter, r *http.Request, user string) {
	conv, ok := conversationOf(w, r)
	if !ok {
		return
	}
	var b struct {
		Until *time.Time `json:"until"`
	}
	if r.ContentLength != 0 && !decode(w, r, &b) {
		return
	}
	var until time.Time
	if b.Until != nil {
		until = *b.Until
	}
	if err := a.cfg.Push.SetPushMute(r.Context(), user, conv, until); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, muteBody{Inbox: conv, Until: b.Until})
}

func (a *API) unmute(w http.ResponseWriter, r *http.Request, user string) {
	conv, ok := conversationOf(w, r)
	if !ok {
		return
	}
	if err := a.cfg.Push.DeletePushMute(r.Context(), user, conv); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
