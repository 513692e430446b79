package sqlite_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlite"
)

// TestOwedRefused: owed and relayed copies are a sharded store's; the
// embedded store refuses them rather than drop the copies they name.
func TestOwedRefused(t *testing.T) {
	s := open(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(ctx(t), storage.User{ID: u, Name: u, PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	m := storage.Message{ID: "01a2534c-6a65-7034-845c-2bf0bf1f9d7b", From: "alice", To: "bob", TS: 1, Type: protocol.TypeMsg,
		Data: []byte(`{}`), Inboxes: []string{"u/bob"}, Owed: []string{"u/alice"}}
	if _, _, err := s.Append(ctx(t), m); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Append with Owed: %v, want ErrInvalid", err)
	}
	m.Owed, m.Copy, m.Inboxes = nil, true, []string{"u/alice"}
	if _, _, err := s.Append(ctx(t), m); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Append of a relayed copy: %v, want ErrInvalid", err)
	}
	if es, _ := s.Read(ctx(t), "u/bob", 0, 10); len(es) != 0 {
		t.Errorf("stored %+v", es)
	}
}
