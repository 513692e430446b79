package parleyapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeParley answers the user endpoints as docs describe them.
func fakeParley(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	users := map[string]string{} // id → password
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users", func(w http.ResponseWriter, r *http.Request) {
		var u User
		_ = json.NewDecoder(r.Body).Decode(&u)
		mu.Lock()
		defer mu.Unlock()
		if _, ok := users[u.ID]; ok {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":"user exists"}`)
			return
		}
		users[u.ID] = u.Password
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q,"name":%q,"token":"t-%s"}`, u.ID, u.Name, u.ID)
	})
	mux.HandleFunc("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var c struct{ ID, Password string }
		_ = json.NewDecoder(r.Body).Decode(&c)
		mu.Lock()
		defer mu.Unlock()
		if users[c.ID] != c.Password {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"bad credentials"}`)
			return
		}
		fmt.Fprintf(w, `{"token":"t2-%s"}`, c.ID)
	})
	mux.HandleFunc("POST /v1/admin/users", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "secret-pw" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"bad credentials"}`)
			return
		}
		var b struct{ Users []User }
		_ = json.NewDecoder(r.Body).Decode(&b)
		type res struct {
			ID    string `json:"id"`
			Token string `json:"token,omitempty"`
			Error string `json:"error,omitempty"`
		}
		out := []res{}
		mu.Lock()
		defer mu.Unlock()
		for _, u := range b.Users {
			if _, ok := users[u.ID]; ok { // as Parley: no token for an existing account
				out = append(out, res{ID: u.ID, Error: "exists"})
				continue
			}
			users[u.ID] = u.Password
			out = append(out, res{ID: u.ID, Token: "b-" + u.ID})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"users": out})
	})
	groups := 0
	mux.HandleFunc("POST /v1/groups", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Name    string   `json:"name"`
			Members []string `json:"members"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		owner, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer b-")
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"missing bearer token"}`)
			return
		}
		if b.Name == "" || slices.Contains(b.Members, "nobody") {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"member must be an existing user id"}`)
			return
		}
		mu.Lock()
		groups++
		id := fmt.Sprintf("g%d", groups)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "name": b.Name, "owner": owner,
			"members": append([]string{owner}, b.Members...)})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestProvision(t *testing.T) {
	srv := fakeParley(t)
	ctx := context.Background()
	users := []User{{ID: "a", Password: "password1"}, {ID: "b", Password: "password1"}, {ID: "c", Password: "password1"}}

	bulk := &Client{Base: srv.URL, AdminUser: "admin", AdminPassword: "secret-pw", BatchSize: 2}
	creds, err := bulk.Provision(ctx, users)
	if err != nil || len(creds) != 3 || creds[2] != (Credential{"c", "b-c"}) {
		t.Fatalf("bulk: %v, %v", creds, err)
	}
	// Again, as a later run on the same node: the bulk route mints no token
	// for an existing account, so those sign in; a new one is created.
	again := append(users[:2:2], User{ID: "d", Password: "password1"})
	creds, err = bulk.Provision(ctx, again)
	if err != nil || len(creds) != 3 || creds[0] != (Credential{"a", "t2-a"}) || creds[2] != (Credential{"d", "b-d"}) {
		t.Fatalf("bulk again: %v, %v", creds, err)
	}

	others := []User{{ID: "e", Password: "password1"}, {ID: "f", Password: "password1"}}
	self := &Client{Base: srv.URL}
	creds, err = self.Provision(ctx, others)
	if err != nil || len(creds) != 2 || creds[1] != (Credential{"f", "t-f"}) {
		t.Fatalf("sign-up: %v, %v", creds, err)
	}
	// Again: the users exist, so the client logs in instead.
	creds, err = self.Provision(ctx, others)
	if err != nil || creds[0] != (Credential{"e", "t2-e"}) {
		t.Fatalf("sign-up again: %v, %v", creds, err)
	}

	bad := &Client{Base: srv.URL, AdminUser: "admin", AdminPassword: "wrong"}
	var se *StatusError
	if _, err := bad.Provision(ctx, users); !errors.As(err, &se) || se.Status != 401 || se.Message != "bad credentials" {
		t.Errorf("bad admin: %v", err)
	}
}

func TestCreateGroups(t *testing.T) {
	srv := fakeParley(t)
	ctx := context.Background()
	c := &Client{Base: srv.URL, Concurrency: 2}
	owner := Credential{ID: "a", Token: "b-a"}
	var groups []Group
	for i := range 20 {
		groups = append(groups, Group{Name: fmt.Sprintf("n%d", i), Owner: owner, Members: []string{"b", "c"}})
	}
	ids, err := c.CreateGroups(ctx, groups)
	if err != nil || len(ids) != 20 {
		t.Fatalf("CreateGroups: %v, %v", ids, err)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Errorf("ids %v: empty or repeated", ids)
		}
		seen[id] = true
	}

	tests := map[string]struct {
		group Group
		want  string
	}{
		"no token":       {Group{Name: "x", Members: []string{"b"}}, "HTTP 401: missing bearer token"},
		"unknown member": {Group{Name: "x", Owner: owner, Members: []string{"nobody"}}, "HTTP 400: member must be"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := c.CreateGroups(ctx, []Group{groups[0], tc.group})
			var se *StatusError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
