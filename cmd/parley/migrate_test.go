package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/sqlite"
)

// TestMigrateStore runs `parley migrate-store` from an embedded store to a
// Postgres database that does not exist yet, then back to a new embedded
// store, and checks that a second copy into a filled target is refused.
func TestMigrateStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "parley.db")
	token := sha256.Sum256([]byte("secret"))
	msg := storage.Message{ID: uuid.NewString(), From: "alice", To: "bob", TS: time.Now().UnixMilli(),
		Type: protocol.TypeMsg, Cid: "c1", Data: []byte(`{"text":"hi"}`), Inboxes: []string{"u/bob", "u/alice"}}

	s, err := sqlite.Open(ctx, sqlite.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(ctx, storage.User{ID: u, Name: u, PasswordHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateToken(ctx, token[:], "alice", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Append(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursors(ctx, []storage.Cursor{{ClientID: "bob-phone", Inbox: "u/bob", Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	url := newDatabaseURL(t)
	migrate := func(from, to string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, []string{"migrate-store", "--from", from, "-to", to}, env(nil), &out, &errOut)
		t.Logf("migrate-store %s → %s: exit %d\n%s%s", from, redactURL(to), code, out.String(), errOut.String())
		return code, out.String(), errOut.String()
	}

	code, out, _ := migrate(path, url)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"users      2 rows", "entries    2 rows", "cursors    1 rows",
		fmt.Sprintf(" rows in %d tables in ", len(storage.CopyTables())), "row counts verified"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	pg, err := postgres.Open(ctx, postgres.Config{URL: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if u, err := pg.TokenUser(ctx, token[:], time.Now()); err != nil || u != "alice" {
		t.Errorf("TokenUser = %q, %v; want alice", u, err)
	}
	if _, dup, err := pg.Append(ctx, msg); err != nil || !dup {
		t.Errorf("Append(repeated cid) = dup %v, %v; want a duplicate", dup, err)
	}
	if seq, err := pg.GetCursor(ctx, "bob-phone", "u/bob"); err != nil || seq != 1 {
		t.Errorf("GetCursor = %d, %v; want 1", seq, err)
	}

	// A filled target is refused, and says which table holds rows.
	code, _, errOut := migrate(path, url)
	if code != 1 || !strings.Contains(errOut, "not empty: table users has 2 rows") {
		t.Errorf("copy into a filled target: exit %d, stderr %q; want 1 naming the users table", code, errOut)
	}

	// And back, into a new embedded store.
	back := filepath.Join(dir, "back.db")
	if code, _, _ := migrate(url, back); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, err := sqlite.Open(ctx, sqlite.Config{Path: back}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if seq, err := b.LastSeq(ctx, "u/bob"); err != nil || seq != 1 {
		t.Errorf("LastSeq(u/bob) = %d, %v; want 1", seq, err)
	}
}

func TestMigrateStoreArguments(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		args []string
		code int
		want string
	}{
		"help":           {[]string{"-h"}, 0, "Usage: parley migrate-store"},
		"missing -to":    {[]string{"-from", "a.db"}, 2, "both -from and -to are required"},
		"same store":     {[]string{"-from", "a.db", "-to", "a.db"}, 2, "the same store"},
		"extra argument": {[]string{"-from", "a.db", "-to", "b.db", "c.db"}, 2, "unexpected arguments"},
		"unknown flag":   {[]string{"-form", "a.db"}, 2, "flag provided but not defined"},
		"missing source": {[]string{"-from", filepath.Join(dir, "nope.db"), "-to", filepath.Join(dir, "b.db")}, 1, "no such file"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), append([]string{"migrate-store"}, c.args...), env(nil), &out, &errOut)
			if code != c.code || !strings.Contains(errOut.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, errOut.String(), c.code, c.want)
			}
		})
	}
}

// newDatabaseURL returns the URL of a Postgres database that does not exist
// yet, and drops it when the test ends.
func newDatabaseURL(t *testing.T) string {
	t.Helper()
	name := "parley_test_migrate_" + strings.ReplaceAll(uuid.NewString()[:13], "-", "")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgtest.ServerURL())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return pgtest.WithDatabase(pgtest.ServerURL(), name)
}

// TestHelpMentionsMigrateStore: `parley -h` lists the subcommand.
func TestHelpMentionsMigrateStore(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, env(nil), &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), "parley migrate-store -from SOURCE -to TARGET") {
		t.Errorf("parley -h does not mention migrate-store:\n%s", errOut.String())
	}
}
