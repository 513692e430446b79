// Package parleyapi is the load tester's client for Parley's HTTP API: it
// creates the users a run connects as, obtains their tokens, and creates the
// groups they talk in.
package parleyapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// ErrNotAvailable: the server does not have the API (it answered an empty 404).
var ErrNotAvailable = errors.New("not available")

// User is an account to create.
type User struct {
	ID       string `json:"id"`
	Password string `json:"password"`
	Name     string `json:"name,omitempty"`
}

// Credential is what a client connects with: MQTT username = ID, password = Token.
type Credential struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// Group is a group to create: Owner creates it with its token and is its
// first member; Members are the others.
type Group struct {
	Name    string
	Owner   Credential
	Members []string
}

// StatusError is an HTTP error answer.
type StatusError struct {
	Op      string
	Status  int
	Message string // the "error" member of the body, or the body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.Status, e.Message)
}

// Client talks to one Parley server.
type Client struct {
	// Base is the server's HTTP root, such as http://127.0.0.1:8080.
	Base string
	// AdminUser and AdminPassword, when set, are an administrator's
	// credentials (PARLEY_ADMINS) for bulk provisioning.
	AdminUser, AdminPassword string
	// BatchSize is the number of users per bulk request (default 1000).
	BatchSize int
	// Concurrency bounds parallel sign-ups without admin credentials, and
	// parallel group creations (default 8).
	Concurrency int
	HTTP        *http.Client // default http.DefaultClient
}

// Provision creates the users and returns their credentials in the same
// order. With admin credentials it uses the bulk endpoint, which mints no
// token for an existing account: those sign in with their password (a run
// that reuses the users of an earlier one on the same node); without, one
// sign-up per user, which signs an existing user in too.
func (c *Client) Provision(ctx context.Context, users []User) ([]Credential, error) {
	if c.AdminUser != "" {
		return c.provisionBulk(ctx, users)
	}
	out := make([]Credential, len(users))
	errs := make([]error, len(users))
	c.parallel(ctx, len(users), func(i int) { out[i], errs[i] = c.SignUp(ctx, users[i]) })
	if err := cmp.Or(ctx.Err(), errors.Join(errs...)); err != nil {
		return nil, fmt.Errorf("provision users: %w", err)
	}
	return out, nil
}

func (c *Client) provisionBulk(ctx context.Context, users []User) ([]Credential, error) {
	batch := c.BatchSize
	if batch <= 0 {
		batch = 1000
	}
	out := make([]Credential, 0, len(users))
	for start := 0; start < len(users); start += batch {
		part := users[start:min(start+batch, len(users))]
		var resp struct {
			Users []struct {
				ID    string `json:"id"`
				Token string `json:"token"`
				Error string `json:"error"`
			} `json:"users"`
		}
		if err := c.do(ctx, "bulk provision users", http.MethodPost, "/v1/admin/users", auth{admin: true},
			map[string]any{"users": part}, &resp); err != nil {
			return nil, err
		}
		if len(resp.Users) != len(part) {
			return nil, fmt.Errorf("bulk provision users: asked for %d, got %d", len(part), len(resp.Users))
		}
		creds := make([]Credential, len(part))
		var existing []int
		for i, u := range resp.Users {
			switch {
			case u.ID != part[i].ID:
				return nil, fmt.Errorf("bulk provision users: asked for %q, got %q", part[i].ID, u.ID)
			case u.Error == "exists":
				existing = append(existing, i)
			case u.Error != "" || u.Token == "":
				return nil, fmt.Errorf("bulk provision users: user %q: %s", part[i].ID, cmpStr(u.Error, "no token"))
			default:
				creds[i] = Credential{ID: u.ID, Token: u.Token}
			}
		}
		errs := make([]error, len(existing))
		c.parallel(ctx, len(existing), func(j int) {
			u := part[existing[j]]
			tok, err := c.Token(ctx, u.ID, u.Password)
			creds[existing[j]], errs[j] = Credential{ID: u.ID, Token: tok}, err
		})
		if err := cmp.Or(ctx.Err(), errors.Join(errs...)); err != nil {
			return nil, fmt.Errorf("bulk provision users: sign in existing users: %w", err)
		}
		out = append(out, creds...)
	}
	return out, nil
}

// SignUp creates one user (POST /v1/users); for a user that exists it logs in
// (POST /v1/tokens) with the same password instead.
func (c *Client) SignUp(ctx context.Context, u User) (Credential, error) {
	var resp struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	err := c.do(ctx, "create user "+u.ID, http.MethodPost, "/v1/users", auth{}, u, &resp)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusConflict {
		tok, err := c.Token(ctx, u.ID, u.Password)
		return Credential{ID: u.ID, Token: tok}, err
	}
	if err != nil {
		return Credential{}, err
	}
	return Credential{ID: u.ID, Token: resp.Token}, nil
}

// Token logs a user in and returns a fresh token.
func (c *Client) Token(ctx context.Context, id, password string) (string, error) {
	var resp struct {
		Token string `json:"token"`
	}
	if err := c.do(ctx, "token for "+id, http.MethodPost, "/v1/tokens", auth{},
		map[string]string{"id": id, "password": password}, &resp); err != nil {
		return "", err
	}
	return resp.Token, nil
}

// CreateGroups creates the groups, each by its owner (POST /v1/groups with
// the owner's token), and returns the ids the server gave them, in order.
func (c *Client) CreateGroups(ctx context.Context, groups []Group) ([]string, error) {
	ids := make([]string, len(groups))
	errs := make([]error, len(groups))
	c.parallel(ctx, len(groups), func(i int) {
		g := groups[i]
		var resp struct {
			ID string `json:"id"`
		}
		errs[i] = c.do(ctx, "create group "+g.Name, http.MethodPost, "/v1/groups", auth{bearer: g.Owner.Token},
			map[string]any{"name": g.Name, "members": g.Members}, &resp)
		if errs[i] == nil && resp.ID == "" {
			errs[i] = fmt.Errorf("create group %s: the answer has no id", g.Name)
		}
		ids[i] = resp.ID
	})
	if err := cmp.Or(ctx.Err(), errors.Join(errs...)); err != nil {
		return nil, fmt.Errorf("create groups: %w", err)
	}
	return ids, nil
}

// parallel runs fn(0) … fn(n-1), at most Concurrency at a time, and stops
// starting new calls when ctx ends.
func (c *Client) parallel(ctx context.Context, n int, fn func(i int)) {
	sem := make(chan struct{}, max(c.Concurrency, 8))
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
}

// auth says how a request authenticates: as an administrator (HTTP Basic
// with the client's admin credentials), with a user's bearer token, or not.
type auth struct {
	admin  bool
	bearer string
}

func (c *Client) do(ctx context.Context, op, method, path string, a auth, body, out any) error {
	u, err := url.JoinPath(c.Base, path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case a.admin:
		req.SetBasicAuth(c.AdminUser, c.AdminPassword)
	case a.bearer != "":
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(data))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusNotFound && msg == "" {
			return fmt.Errorf("%s: %w: %w", op, ErrNotAvailable, &StatusError{Op: op, Status: resp.StatusCode})
		}
		return &StatusError{Op: op, Status: resp.StatusCode, Message: msg}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: decode answer: %w", op, err)
	}
	return nil
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
