package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/sqlite"
)

// users runs `parley users args…` with env and returns its exit code and
// output.
func users(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"users"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	t.Logf("parley users %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// withEnv returns env with more variables.
func withEnv(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestUsersCommands: parley users add, passwd, revoke and delete on the
// configured store, embedded and Postgres.
func TestUsersCommands(t *testing.T) {
	for name, store := range map[string]struct {
		env  func(t *testing.T) map[string]string
		open func(t *testing.T, env map[string]string) storage.Store
	}{
		"embedded": {
			env: func(t *testing.T) map[string]string {
				return map[string]string{"PARLEY_DATABASE_PATH": filepath.Join(t.TempDir(), "parley.db")}
			},
			open: func(t *testing.T, env map[string]string) storage.Store {
				s, err := sqlite.Open(context.Background(), sqlite.Config{Path: env["PARLEY_DATABASE_PATH"]}, nil)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		},
		"postgres": {
			env: func(t *testing.T) map[string]string {
				return map[string]string{"PARLEY_DATABASE_URL": pgtest.NewDatabase(t)}
			},
			open: func(t *testing.T, env map[string]string) storage.Store {
				s, err := postgres.Open(context.Background(), postgres.Config{URL: env["PARLEY_DATABASE_URL"]}, nil)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			env := store.env(t)
			env["PARLEY_AUTH_BCRYPT_COST"] = "4"
			// login signs in with the store of the commands, as a node would.
			login := func(user, password string) error {
				t.Helper()
				st := store.open(t, env)
				defer st.Close()
				accounts, err := auth.New(auth.Config{BcryptCost: 4}, st)
				if err != nil {
					t.Fatal(err)
				}
				_, err = accounts.Login(context.Background(), user, password)
				return err
			}

			code, out, _ := users(t, withEnv(env, "PARLEY_PASSWORD", "alice-password"), "add", "-name", "Alice", "alice")
			if code != 0 || !strings.Contains(out, "created user alice") || !strings.Contains(out, "token: pt_") {
				t.Fatalf("add: exit %d, %q", code, out)
			}
			if err := login("alice", "alice-password"); err != nil {
				t.Fatalf("sign in as the added user: %v", err)
			}
			if code, _, errOut := users(t, env, "add", "alice"); code != 1 || !strings.Contains(errOut, "taken") {
				t.Errorf("add of a taken id: exit %d, %q", code, errOut)
			}
			// Without PARLEY_PASSWORD a password is made and printed.
			code, out, _ = users(t, env, "add", "bob")
			pw, ok := strings.CutPrefix(out[strings.Index(out, "password: "):], "password: ")
			pw, _, _ = strings.Cut(pw, "\n")
			if code != 0 || !ok || len(pw) != 20 {
				t.Fatalf("add without a password: exit %d, %q", code, out)
			}
			if err := login("bob", pw); err != nil {
				t.Errorf("sign in with the printed password: %v", err)
			}

			// passwd: the new password works, the old does not, sessions end.
			code, out, _ = users(t, withEnv(env, "PARLEY_PASSWORD", "new-alice-password"), "passwd", "alice")
			if code != 0 || !strings.Contains(out, "password of alice set; 2 sessions ended") {
				t.Errorf("passwd: exit %d, %q; want alice's 2 sessions (add's token, the sign-in) ended", code, out)
			}
			if err := login("alice", "alice-password"); !errors.Is(err, auth.ErrBadCredentials) {
				t.Errorf("the old password after passwd: %v", err)
			}
			if err := login("alice", "new-alice-password"); err != nil {
				t.Errorf("the new password after passwd: %v", err)
			}
			if code, _, errOut := users(t, withEnv(env, "PARLEY_PASSWORD", "short"), "passwd", "alice"); code != 1 ||
				!strings.Contains(errOut, "password must be") {
				t.Errorf("passwd with a weak password: exit %d, %q", code, errOut)
			}

			// revoke: every session; one by id.
			if code, out, _ := users(t, env, "revoke", "alice"); code != 0 || !strings.Contains(out, "1 sessions of alice ended") {
				t.Errorf("revoke: exit %d, %q", code, out)
			}
			st := store.open(t, env)
			ts, err := st.UserTokens(context.Background(), "bob", time.Now())
			st.Close()
			if err != nil || len(ts) != 2 {
				t.Fatalf("bob's tokens: %d, %v", len(ts), err)
			}
			id := auth.SessionID(ts[0].Hash)
			if code, out, _ := users(t, env, "revoke", "bob", "-session", id); code != 0 || !strings.Contains(out, "session "+id+" of bob ended") {
				t.Errorf("revoke -session: exit %d, %q", code, out)
			}
			if code, _, errOut := users(t, env, "revoke", "-session", id, "bob"); code != 1 || !strings.Contains(errOut, "no user bob (or") {
				t.Errorf("revoke of an ended session: exit %d, %q", code, errOut)
			}
			if code, _, _ := users(t, env, "revoke", "nobody"); code != 1 {
				t.Errorf("revoke of an unknown user: exit %d, want 1", code)
			}

			// delete: only with -yes; then the id stays taken and no one signs in.
			if code, _, errOut := users(t, env, "delete", "alice"); code != 2 || !strings.Contains(errOut, "-yes") {
				t.Errorf("delete without -yes: exit %d, %q", code, errOut)
			}
			if code, out, _ := users(t, env, "delete", "-yes", "alice"); code != 0 || !strings.Contains(out, "deleted alice") {
				t.Fatalf("delete: exit %d, %q", code, out)
			}
			st = store.open(t, env)
			u, err := st.GetUser(context.Background(), "alice")
			st.Close()
			if err != nil || !u.Deleted() || u.Name != storage.DeletedUserName {
				t.Errorf("alice after delete: %+v, %v", u, err)
			}
			if err := login("alice", "new-alice-password"); !errors.Is(err, auth.ErrBadCredentials) {
				t.Errorf("sign in as a deleted user: %v", err)
			}
			if code, _, _ := users(t, withEnv(env, "PARLEY_PASSWORD", "alice-password"), "add", "alice"); code != 1 {
				t.Errorf("add with a deleted user's id: exit %d, want 1", code)
			}
			if code, _, _ := users(t, env, "delete", "-yes", "alice"); code != 1 {
				t.Errorf("second delete: exit %d, want 1", code)
			}
		})
	}
}

func TestUsersArguments(t *testing.T) {
	env := map[string]string{"PARLEY_DATABASE_PATH": filepath.Join(t.TempDir(), "parley.db")}
	cases := map[string]struct {
		args []string
		code int
		want string
	}{
		"help":            {[]string{"-h"}, 0, "Usage: parley users"},
		"no command":      {nil, 2, "Usage: parley users"},
		"unknown command": {[]string{"rename", "alice"}, 2, `unknown command "rename"`},
		"no user":         {[]string{"add"}, 2, "exactly one user id"},
		"two users":       {[]string{"revoke", "alice", "bob"}, 2, "exactly one user id"},
		"invalid id":      {[]string{"add", "Alice"}, 2, "user id must match"},
		"unknown flag":    {[]string{"add", "-yes", "alice"}, 2, "flag provided but not defined"},
		"bad config":      {[]string{"-config", filepath.Join(t.TempDir(), "nope.yaml"), "add", "alice"}, 2, "configuration"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := users(t, env, c.args...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, c.code, c.want)
			}
		})
	}
}

// TestUsersEndConnections: sessions ended by parley users end their live
// MQTT connections on the running nodes of a cluster at once (an event on
// NATS), though the nodes check their connections' tokens only every
// minute.
func TestUsersEndConnections(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	env := map[string]string{"PARLEY_DATABASE_URL": n1.DBURL, "PARLEY_CLUSTER_NATS_URL": c.NATS.URLs(),
		"PARLEY_AUTH_BCRYPT_COST": "4", "PARLEY_PASSWORD": "another-password"}
	alice := n1.User("alice")
	n2.MustV5("alice", alice, "alice/phone", brokertest.V5Options{})
	n1.MustV5("alice", n1.Login("alice"), "alice/laptop", brokertest.V5Options{})
	bob := n1.User("bob")
	n2.MustV5("bob", bob, "bob/phone", brokertest.V5Options{})

	if code, out, _ := users(t, env, "revoke", "alice"); code != 0 || !strings.Contains(out, "nodes were told") {
		t.Fatalf("revoke: exit %d, %q", code, out)
	}
	for _, n := range []*brokertest.Node{n2, n1} {
		testwait.Until(t, time.Second, "alice's connections ended", func() bool {
			return !n.Srv.Connected("alice/phone") && !n.Srv.Connected("alice/laptop")
		})
	}
	if !n2.Srv.Connected("bob/phone") {
		t.Fatal("revoking alice's sessions ended bob's connection")
	}
	if code := n2.HTTPDo("GET", "/v1/me", alice, nil, nil); code != 401 {
		t.Errorf("alice's revoked token on n2: %d, want 401", code)
	}

	// passwd and delete tell the nodes too.
	if code, _, _ := users(t, env, "passwd", "bob"); code != 0 {
		t.Fatal("passwd failed")
	}
	testwait.Until(t, time.Second, "bob's connection ended by passwd", func() bool { return !n2.Srv.Connected("bob/phone") })
	carol := n1.User("carol")
	n2.MustV5("carol", carol, "carol/phone", brokertest.V5Options{})
	if code, _, _ := users(t, env, "delete", "carol", "-yes"); code != 0 {
		t.Fatal("delete failed")
	}
	testwait.Until(t, time.Second, "carol's connection ended by delete", func() bool { return !n2.Srv.Connected("carol/phone") })
}
