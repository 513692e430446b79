package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/cluster"
	"github.com/parleychat/parley/groups"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// usersCommand manages accounts from the command line, on the configured
// store.
const usersCommand = "users"

// usersSummary is the line `parley -h` gives the subcommand.
const usersSummary = `  parley users add|passwd|revoke|delete USER
        manage accounts in the configured store (parley users -h for more)
`

const usersUsage = `Usage: parley users [-config FILE] COMMAND [flags] USER

Manages accounts in the store the configuration names (database.url, or the
embedded store at database.path), with the node's settings (configs/parley.yaml,
PARLEY_* variables, or -config FILE).

  add USER [-name NAME]   create an account; prints a first access token
  passwd USER             set the password; every session of the user ends
  revoke USER [-session ID]
                          end every session of the user (sign out everywhere),
                          or the one with that id (GET /v1/me/sessions)
  delete USER -yes        delete the account and its data; its messages in
                          other users' inboxes stay, attributed to a deleted
                          user, and its id is never given to anyone again

The password of add and passwd is read from the environment variable
PARLEY_PASSWORD; without it a random one is made and printed.

Sessions ended here end their live MQTT connections: at once when
cluster.nats_url is set (an event to every node), otherwise at each node's
next check of its connections' tokens (auth.session_check, 1m).
`

// randomPassword returns a password of 20 letters and digits.
func randomPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// runUsers runs `parley users` and returns the exit code: 0 done, 1
// failed, 2 bad arguments or configuration.
func runUsers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var configPath, name, session string
	var yes bool
	top := flag.NewFlagSet("parley "+usersCommand, flag.ContinueOnError)
	top.SetOutput(stderr)
	top.StringVar(&configPath, "config", "", "YAML configuration file (default configs/parley.yaml if present)")
	top.Usage = func() { fmt.Fprint(stderr, usersUsage) }
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if top.NArg() == 0 {
		fmt.Fprint(stderr, usersUsage)
		return 2
	}
	verb := top.Arg(0)
	fs := flag.NewFlagSet("parley "+usersCommand+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usersUsage) }
	fs.StringVar(&configPath, "config", configPath, "YAML configuration file")
	switch verb {
	case "add":
		fs.StringVar(&name, "name", "", "display name (default: the user id)")
	case "revoke":
		fs.StringVar(&session, "session", "", "end only the session with this id")
	case "delete":
		fs.BoolVar(&yes, "yes", false, "really delete the account")
	case "passwd":
	default:
		fmt.Fprintf(stderr, "parley %s: unknown command %q (add, passwd, revoke, delete; see -h)\n", usersCommand, verb)
		return 2
	}
	// Flags may come before or after the user id.
	var positional []string
	rest := top.Args()[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "parley %s %s: give exactly one user id (see -h)\n", usersCommand, verb)
		return 2
	}
	user := positional[0]
	if !protocol.ValidID(user) {
		fmt.Fprintf(stderr, "parley %s %s: %v\n", usersCommand, verb, auth.ErrInvalidID)
		return 2
	}
	if verb == "delete" && !yes {
		fmt.Fprintf(stderr, "parley %s delete: this deletes %s's account and data for good; add -yes to do it\n", usersCommand, user)
		return 2
	}

	var cfgArgs []string
	if configPath != "" {
		cfgArgs = []string{"-config", configPath}
	}
	cfg, _, _, err := loadConfig(cfgArgs, getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "parley %s: configuration: %v\n", usersCommand, err)
		return 2
	}
	u := &usersCmd{cfg: cfg, out: stdout, errOut: stderr,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := u.open(ctx); err != nil {
		fmt.Fprintf(stderr, "parley %s: %v\n", usersCommand, err)
		return 1
	}
	defer u.close()
	password := getenv("PARLEY_PASSWORD")
	switch verb {
	case "add":
		err = u.add(ctx, user, name, password)
	case "passwd":
		err = u.passwd(ctx, user, password)
	case "revoke":
		err = u.revoke(ctx, user, session)
	case "delete":
		err = u.delete(ctx, user)
	}
	if err != nil {
		fmt.Fprintf(stderr, "parley %s %s: %v\n", usersCommand, verb, describeUsersError(user, err))
		return 1
	}
	return 0
}

// describeUsersError says what went wrong in an operator's words.
func describeUsersError(user string, err error) error {
	switch {
	case errors.Is(err, auth.ErrExists):
		return fmt.Errorf("the user id %s is taken (by a user, a deleted user or an administrator)", user)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("no user %s (or it is deleted, or has no such session)", user)
	}
	return err
}

// usersCmd is an open store and the accounts over it.
type usersCmd struct {
	cfg         config
	out, errOut io.Writer
	log         *slog.Logger
	store       storage.Store
	accounts    *auth.Service
}

func (u *usersCmd) open(ctx context.Context) error {
	st, err := openStore(ctx, u.cfg, prometheus.NewRegistry(), u.log)
	if err != nil {
		return err
	}
	admins, _ := u.cfg.admins()
	accounts, err := auth.New(auth.Config{TokenTTL: u.cfg.TokenTTL, TokenMax: u.cfg.TokenMax, OpenRegistration: true,
		Admins: admins, BcryptCost: u.cfg.BcryptCost}, st)
	if err != nil {
		st.Close()
		return err
	}
	accounts.OnRevoke(u.revoked)
	u.store, u.accounts = st, accounts
	return nil
}

func (u *usersCmd) close() {
	if err := u.store.Close(); err != nil {
		fmt.Fprintf(u.errOut, "parley %s: close store: %v\n", usersCommand, err)
	}
}

// revoked tells the running nodes of a revocation (auth.Service.OnRevoke),
// through NATS when the configuration names it.
func (u *usersCmd) revoked(r auth.Revocation) {
	kind := cluster.EventTokensRevoked
	if r.Deleted {
		kind = cluster.EventUserDeleted
	}
	u.publish(kind, cluster.Revoked{User: r.User, Tokens: r.Tokens})
}

// publish sends the nodes an event, or says when they will notice.
func (u *usersCmd) publish(kind string, body any) {
	if u.cfg.NATSURL == "" {
		fmt.Fprintf(u.out, "running nodes end the live connections within auth.session_check (%v)\n", u.cfg.SessionCheck)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cluster.PublishEvent(ctx, u.cfg.NATSURL, kind, body); err != nil {
		fmt.Fprintf(u.errOut, "parley %s: the nodes could not be told (%v); they end the live connections within auth.session_check (%v)\n",
			usersCommand, err, u.cfg.SessionCheck)
		return
	}
	fmt.Fprintln(u.out, "the cluster's nodes were told: live connections end now")
}

func (u *usersCmd) password(given string) (string, bool) {
	if given != "" {
		return given, false
	}
	return randomPassword(), true
}

func (u *usersCmd) add(ctx context.Context, user, name, password string) error {
	pw, made := u.password(password)
	token, err := u.accounts.Register(ctx, user, pw, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(u.out, "created user %s\n", user)
	if made {
		fmt.Fprintf(u.out, "password: %s\n", pw)
	}
	fmt.Fprintf(u.out, "token: %s\n", token)
	return nil
}

func (u *usersCmd) passwd(ctx context.Context, user, password string) error {
	pw, made := u.password(password)
	n, err := u.accounts.SetPassword(ctx, user, pw)
	if err != nil {
		return err
	}
	fmt.Fprintf(u.out, "password of %s set; %d sessions ended\n", user, n)
	if made {
		fmt.Fprintf(u.out, "password: %s\n", pw)
	}
	return nil
}

func (u *usersCmd) revoke(ctx context.Context, user, session string) error {
	if session != "" {
		if err := u.accounts.RevokeSession(ctx, user, session); err != nil {
			return err
		}
		fmt.Fprintf(u.out, "session %s of %s ended\n", session, user)
		return nil
	}
	if err := u.exists(ctx, user); err != nil {
		return err
	}
	n, err := u.accounts.RevokeAll(ctx, user)
	if err != nil {
		return err
	}
	fmt.Fprintf(u.out, "%d sessions of %s ended\n", n, user)
	return nil
}

// exists returns an error wrapping storage.ErrNotFound unless user is a
// live account.
func (u *usersCmd) exists(ctx context.Context, user string) error {
	acc, err := u.store.GetUser(ctx, user)
	if err == nil && acc.Deleted() {
		err = fmt.Errorf("user %s is deleted: %w", user, storage.ErrNotFound)
	}
	return err
}

func (u *usersCmd) delete(ctx context.Context, user string) error {
	if err := u.exists(ctx, user); err != nil {
		return err
	}
	g := groups.New(groups.Config{}, u.store, commandBroker{u})
	if err := g.LeaveAll(ctx, user); err != nil {
		return err
	}
	if err := u.accounts.DeleteUser(ctx, user); err != nil {
		return err
	}
	fmt.Fprintf(u.out, "deleted %s\n", user)
	return nil
}

// commandBroker is groups.Broker outside a node: there are no connections
// to deliver to (devices get the entries from the store when they catch
// up), and membership changes go to the running nodes as events.
type commandBroker struct{ u *usersCmd }

func (commandBroker) Deliver(protocol.Entry) {}

func (b commandBroker) MembershipChanged(group, removed string) {
	if b.u.cfg.NATSURL == "" {
		return // the nodes read the group's members again within 5 s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cluster.PublishEvent(ctx, b.u.cfg.NATSURL, cluster.EventMembership,
		cluster.Membership{Group: group, Removed: removed}); err != nil {
		fmt.Fprintf(b.u.errOut, "parley %s: the nodes could not be told of group %s: %v\n", usersCommand, group, err)
	}
}

// validateSessions checks the settings of tokens' lifetime and of the
// nodes' checks of their connections' tokens.
func (c *config) validateSessions() []error {
	var errs []error
	if c.TokenTTL < time.Minute {
		errs = append(errs, errors.New("auth.token_ttl must be at least 1m"))
	}
	if c.TokenMax < c.TokenTTL {
		errs = append(errs, fmt.Errorf("auth.token_max (%v) must be at least auth.token_ttl (%v)", c.TokenMax, c.TokenTTL))
	}
	if c.SessionCheck < time.Second {
		errs = append(errs, errors.New("auth.session_check must be at least 1s"))
	}
	return errs
}
