package push

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
)

// APNsConfig configures the APNs provider. Token authentication only: one
// .p8 key serves both environments and every app of the team.
type APNsConfig struct {
	// KeyFile is the path of the .p8 signing key made in Apple's developer
	// account (Certificates, Identifiers & Profiles › Keys). Required.
	KeyFile string
	// KeyID is the key's 10-character id. Required.
	KeyID string
	// TeamID is the developer team's id, the issuer of our tokens. Required.
	TeamID string
	// Topic is the app's bundle id, sent as apns-topic. Required.
	Topic string
	// ProductionURL is the host that production tokens are sent to.
	// Default apns2.HostProduction ("https://api.push.apple.com").
	ProductionURL string
	// SandboxURL is the host that sandbox tokens are sent to.
	// Default apns2.HostDevelopment ("https://api.sandbox.push.apple.com").
	SandboxURL string
	// Timeout bounds each send. Default 10s.
	Timeout time.Duration
	// RootCAs verifies the hosts' certificates. Default nil: the system's
	// roots. Tests set the fake server's.
	RootCAs *x509.CertPool
}

func (c *APNsConfig) setDefaults() {
	if c.ProductionURL == "" {
		c.ProductionURL = apns2.HostProduction
	}
	if c.SandboxURL == "" {
		c.SandboxURL = apns2.HostDevelopment
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// apnsMaxPayload is APNs's limit on a notification's JSON payload.
const apnsMaxPayload = 4096

// APNs sends notifications through Apple's APNs over HTTP/2. It keeps one
// connection per host open across sends, as Apple asks. Safe for concurrent
// use.
type APNs struct {
	cfg        APNsConfig
	log        *slog.Logger
	production *apns2.Client
	sandbox    *apns2.Client
	transport  *http.Transport
	token      *token.Token // shared by both clients
}

// NewAPNs checks cfg, loads the signing key and returns the APNs sender. It
// does not connect: the first send does. log may be nil.
func NewAPNs(cfg APNsConfig, log *slog.Logger) (*APNs, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if cfg.KeyID == "" {
		errs = append(errs, errors.New("KeyID is required"))
	}
	if cfg.TeamID == "" {
		errs = append(errs, errors.New("TeamID is required"))
	}
	if cfg.Topic == "" {
		errs = append(errs, errors.New("the Topic (the app's bundle id) is required"))
	}
	for _, u := range []struct{ name, url string }{
		{"ProductionURL", cfg.ProductionURL}, {"SandboxURL", cfg.SandboxURL},
	} {
		if p, err := url.Parse(u.url); err != nil || p.Scheme != "https" || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q: want an https:// URL", u.name, u.url))
		}
	}
	key, err := loadAPNsKey(cfg.KeyFile)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("apns config: %w", err)
	}

	// One token for both clients: it is signed once and renewed every 50
	// minutes under its own lock. Generate now so a key that cannot sign
	// fails here rather than on the first send.
	tok := &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
	if _, err := tok.Generate(); err != nil {
		return nil, fmt.Errorf("apns config: KeyFile %q: sign a token: %w", cfg.KeyFile, err)
	}

	// Go's own transport speaks HTTP/2 and pings idle connections, like the
	// one apns2 would build, and lets us read the Retry-After header that
	// apns2.Response does not keep.
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 20 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     0, // keep connections: APNs treats reconnect storms as abuse
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second},
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	hc := &http.Client{Transport: responseRecorder{tr}}

	// apns2 clients start on the sandbox host (a package variable): choose
	// each client's host explicitly, and then the configured URL.
	production := apns2.NewTokenClient(tok).Production()
	production.Host = cfg.ProductionURL
	production.HTTPClient = hc
	sandbox := apns2.NewTokenClient(tok).Development()
	sandbox.Host = cfg.SandboxURL
	sandbox.HTTPClient = hc

	return &APNs{
		cfg:        cfg,
		log:        log.With("component", "push", "provider", "apns"),
		production: production,
		sandbox:    sandbox,
		transport:  tr,
		token:      tok,
	}, nil
}

// loadAPNsKey reads and parses a .p8 key file.
func loadAPNsKey(path string) (*ecdsa.PrivateKey, error) {
	if path == "" {
		return nil, errors.New("KeyFile (the .p8 signing key) is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("KeyFile: %w", err)
	}
	key, err := token.AuthKeyFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("KeyFile %q: not a .p8 EC private key: %w", path, err)
	}
	return key, nil
}

// Close closes the idle connections to APNs. Sends after Close reconnect.
func (a *APNs) Close() error {
	a.transport.CloseIdleConnections()
	return nil
}

// Send implements Sender: one POST to the host of the device's environment.
func (a *APNs) Send(ctx context.Context, d Device, n Notification) Result {
	start := time.Now()
	r := a.send(ctx, d, n)
	a.log.LogAttrs(ctx, slog.LevelDebug, "push send",
		slog.String("token", shortToken(d.Token)),
		slog.String("environment", string(d.Environment)),
		slog.Any("result", r),
		slog.Duration("took", time.Since(start)))
	return r
}

func (a *APNs) send(ctx context.Context, d Device, n Notification) Result {
	if d.Platform != PlatformAPNs && d.Platform != "" {
		return badDevice("apns", "platform %q", d.Platform)
	}
	client, hostEnv := a.production, EnvProduction
	switch d.Environment {
	case EnvProduction, EnvUnknown:
	case EnvSandbox:
		client, hostEnv = a.sandbox, EnvSandbox
	default:
		return badDevice("apns", "environment %q", d.Environment)
	}
	if !validAPNsToken(d.Token) {
		return Result{Outcome: InvalidToken, Reason: ReasonMalformedToken,
			Err: fmt.Errorf("apns: %w: token is not hex", ErrBadDevice)}
	}
	now := time.Now()
	expiry := n.Expiry
	if expiry.IsZero() {
		expiry = now.Add(DefaultTTL)
	} else if !expiry.After(now) {
		return Result{Outcome: Permanent, Reason: ReasonExpired,
			Err: fmt.Errorf("apns: %w at %s", ErrExpired, expiry.Format(time.RFC3339))}
	}
	body, err := apnsPayload(n)
	if err != nil {
		return Result{Outcome: Permanent, Reason: ReasonBadNotification, Err: fmt.Errorf("apns: encode payload: %w", err)}
	}
	if len(body) > apnsMaxPayload {
		return Result{Outcome: Permanent, Reason: ReasonPayloadTooLarge,
			Err: fmt.Errorf("apns: %w: %d bytes, limit %d", ErrPayloadTooLarge, len(body), apnsMaxPayload)}
	}

	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	var info responseInfo
	ctx = context.WithValue(ctx, responseInfoKey{}, &info)
	resp, err := client.PushWithContext(ctx, &apns2.Notification{
		DeviceToken: d.Token,
		Topic:       a.cfg.Topic,
		CollapseID:  collapseID(n.ThreadID),
		Expiration:  expiry,
		Priority:    apns2.PriorityHigh,
		PushType:    apns2.PushTypeAlert,
		Payload:     body,
	})
	if err != nil {
		if info.status == 0 {
			// The url.Error would put the whole device token in logs.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = fmt.Errorf("%s host: %w", hostEnv, ue.Err)
			}
			return transportFailure(ctx, "apns", err)
		}
		// A response whose body was not APNs JSON (a proxy's error page):
		// judge by its status alone.
		resp = &apns2.Response{StatusCode: info.status}
	}
	r := Result{
		Status:     resp.StatusCode,
		Reason:     resp.Reason,
		RetryAfter: parseRetryAfter(info.retryAfter, time.Now()),
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return Result{Outcome: Sent, Status: resp.StatusCode, ID: resp.ApnsID}
	case resp.StatusCode == http.StatusGone: // Unregistered, ExpiredToken
		r.Outcome = InvalidToken
		r.InvalidSince = resp.Timestamp.Time
	case resp.StatusCode == http.StatusBadRequest && resp.Reason == apns2.ReasonDeviceTokenNotForTopic:
		r.Outcome = InvalidToken
	case resp.StatusCode == http.StatusBadRequest && resp.Reason == apns2.ReasonBadDeviceToken:
		// A token of the other environment gets the same answer: it proves
		// the token invalid only when it went to its own environment's host.
		r.Outcome = Permanent
		if d.Environment == hostEnv {
			r.Outcome = InvalidToken
		}
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		r.Outcome = Retryable
	case resp.StatusCode == http.StatusForbidden && resp.Reason == apns2.ReasonExpiredProviderToken:
		// apns2 renews our JWT after 50 minutes by our clock; a clock
		// behind Apple's can make APNs see it stale sooner.
		a.renewToken(ctx)
		r.Outcome = Retryable
	default: // other 4xx (bad topic, bad key, payload too large, …)
		r.Outcome = Permanent
	}
	if r.Outcome != Retryable {
		r.RetryAfter = 0
	}
	reason := r.Reason
	if reason == "" {
		reason = http.StatusText(r.Status)
	}
	r.Err = fmt.Errorf("apns: %s %d %s", hostEnv, r.Status, reason)
	if err != nil {
		r.Err = fmt.Errorf("apns: %s %d: %w", hostEnv, r.Status, err)
	}
	return r
}

// minTokenAge is how old a provider token must be before we renew it on
// APNs's word: Apple refuses renewals more often than every 20 minutes
// (TooManyProviderTokenUpdates).
const minTokenAge = 20 * time.Minute

// renewToken signs a new provider token after APNs called ours expired,
// unless ours is too recent to be renewed.
func (a *APNs) renewToken(ctx context.Context) {
	a.token.Lock()
	defer a.token.Unlock()
	if time.Since(time.Unix(a.token.IssuedAt, 0)) < minTokenAge {
		return
	}
	if _, err := a.token.Generate(); err != nil {
		// The key signed at start-up, so this cannot happen; the old token
		// stays in use and the next ExpiredProviderToken tries again.
		a.log.ErrorContext(ctx, "renew provider token", "err", err)
	}
}

// apnsPayload encodes the JSON payload: aps (alert, badge, sound, thread;
// mutable-content for a content-free notification) and Data as top-level
// custom keys.
func apnsPayload(n Notification) ([]byte, error) {
	p := payload.NewPayload().
		AlertTitle(n.Title).
		AlertBody(n.Body).
		Badge(n.Badge).
		Sound("default").
		ThreadID(n.ThreadID)
	if n.ContentFree {
		p.MutableContent()
	}
	for k, v := range n.Data {
		if k != "aps" {
			p.Custom(k, v)
		}
	}
	return json.Marshal(p)
}

// collapseID returns the apns-collapse-id for a thread: the thread id itself,
// or its SHA-256 in hex when it is over APNs's 64-byte limit (a group inbox
// "g/" + a 64-character id).
func collapseID(thread string) string {
	if len(thread) <= 64 {
		return thread
	}
	sum := sha256.Sum256([]byte(thread))
	return hex.EncodeToString(sum[:])
}

// validAPNsToken reports whether t can be an APNs device token: hex, of a
// sane length (32 bytes today; Apple warns the length may change).
func validAPNsToken(t string) bool {
	if t == "" || len(t) > 400 || len(t)%2 != 0 {
		return false
	}
	_, err := hex.DecodeString(t)
	return err == nil
}

// badDevice returns the Permanent result of a malformed Device.
func badDevice(provider, format string, args ...any) Result {
	return Result{Outcome: Permanent, Reason: ReasonBadDevice,
		Err: fmt.Errorf("%s: %w: %s", provider, ErrBadDevice, fmt.Sprintf(format, args...))}
}

// transportFailure returns the Retryable result of a send that got no
// response: a timeout, a cancellation or a network error.
func transportFailure(ctx context.Context, provider string, err error) Result {
	reason := ReasonNetwork
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		reason = ReasonTimeout
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		reason = ReasonCanceled
	}
	return Result{Outcome: Retryable, Reason: reason, Err: fmt.Errorf("%s: %w", provider, err)}
}

// responseInfo is what responseRecorder saw of the response to one request.
type responseInfo struct {
	status     int
	retryAfter string
}

type responseInfoKey struct{}

// responseRecorder keeps the status and Retry-After of each response in the
// responseInfo its request's context carries: apns2 drops the headers, and
// loses the status when the body is not JSON.
type responseRecorder struct {
	*http.Transport
}

// RoundTrip implements http.RoundTripper.
func (t responseRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.Transport.RoundTrip(req)
	if err == nil {
		if info, ok := req.Context().Value(responseInfoKey{}).(*responseInfo); ok {
			info.status = resp.StatusCode
			info.retryAfter = resp.Header.Get("Retry-After")
		}
	}
	return resp, err
}
