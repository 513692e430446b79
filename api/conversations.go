package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/parleychat/parley/storage"
)

// Conversations is what the chat list needs from storage.
type Conversations interface {
	Conversations(ctx context.Context, user string) ([]storage.Conversation, error)
}

func (a *API) registerConversations() {
	if _, ok := a.store.(Conversations); !ok {
		return
	}
	a.mux.HandleFunc("GET /v1/me/conversations", a.authed(a.conversations))
}

type conversationView struct {
	Type    string          `json:"type"` // "direct" or "group"
	Peer    string          `json:"peer,omitempty"`
	Group   string          `json:"group,omitempty"`
	Name    string          `json:"name,omitempty"`
	Inbox   string          `json:"inbox"`
	Last    json.RawMessage `json:"last,omitempty"`
	Unread  int             `json:"unread"`
	ReadSeq int64           `json:"read_seq"`
}

// conversations answers what a chat list screen needs in one call: the
// caller's direct conversations and groups, each with its newest entry,
// unread count and read cursor, newest first.
func (a *API) conversations(w http.ResponseWriter, r *http.Request, user string) {
	cs, err := a.store.(Conversations).Conversations(r.Context(), user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	names := map[string]string{}
	if a.cfg.Groups != nil {
		if gs, err := a.cfg.Groups.ForUser(r.Context(), user); err == nil {
			for _, g := range gs {
				names[g.ID] = g.Name
			}
		}
	}
	out := make([]conversationView, 0, len(cs))
	for _, c := range cs {
		v := conversationView{Unread: c.Unread, ReadSeq: c.ReadSeq}
		if c.Group != "" {
			v.Type, v.Group, v.Name, v.Inbox = "group", c.Group, names[c.Group], "g/"+c.Group
		} else {
			v.Type, v.Peer, v.Inbox = "direct", c.Peer, "u/"+user
		}
		if c.Last != nil {
			v.Last = c.Last.AppendJSON(nil)
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversations": out})
}
