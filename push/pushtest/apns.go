// Package pushtest has fake push providers for tests: an APNs server
// (HTTP/2 over TLS) and an FCM v1 server with its OAuth token endpoint, both
// on loopback. They check every request as strictly as the real services do
// where our senders are concerned (authentication, headers, payload shape),
// report a malformed request as a test error, record what they received, and
// answer each token as the test told them to.
package pushtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"

	"github.com/parleychat/parley/push"
)

// APNsServer is a fake APNs: POST /3/device/{token} on an HTTP/2 TLS server.
// It serves both environments: ProductionURL and SandboxURL differ by a path
// prefix, and each request records which one it came through.
//
// By default it accepts every well-formed notification (200 with an
// apns-id); Reply changes the answer for one token.
type APNsServer struct {
	// KeyFile is a freshly generated .p8 key whose public half the server
	// checks tokens with; KeyID, TeamID and Topic are what it expects.
	KeyFile string
	KeyID   string
	TeamID  string
	Topic   string

	t   testing.TB
	srv *httptest.Server
	pub *ecdsa.PublicKey

	mu       sync.Mutex // guards the fields below
	replies  map[string]APNsReply
	requests []APNsRequest
	count    int
	noRecord bool
	verified map[string]time.Time // bearer tokens whose signature checked out → their iat
}

// APNsReply is how the fake answers one token.
type APNsReply struct {
	// Status is the HTTP status. Default 200.
	Status int
	// Reason is the APNs reason code of an error, e.g. "Unregistered",
	// "BadDeviceToken".
	Reason string
	// RetryAfter, if positive, is sent as a Retry-After header in seconds.
	RetryAfter time.Duration
	// Timestamp is the time of a 410's "timestamp" (Unix milliseconds).
	// Default: now.
	Timestamp time.Time
	// Delay holds the answer back this long, or until the client gives up:
	// for timeouts.
	Delay time.Duration
}

// APNsRequest is one notification the fake received and accepted as well
// formed.
type APNsRequest struct {
	Environment push.Environment // the host it was sent to
	Token       string
	// Headers.
	Topic      string // apns-topic
	PushType   string // apns-push-type
	Priority   string // apns-priority
	Expiration int64  // apns-expiration, Unix seconds; 0 if absent
	CollapseID string // apns-collapse-id
	// Payload.
	Title          string         // aps.alert.title
	Body           string         // aps.alert.body
	Badge          *int           // aps.badge; nil if absent
	Sound          string         // aps.sound
	ThreadID       string         // aps.thread-id
	MutableContent int            // aps.mutable-content: 1 lets the app's Notification Service Extension change it
	Data           map[string]any // top-level keys other than aps
	Payload        []byte         // the raw JSON
}

// sandboxPrefix is the path prefix of SandboxURL.
const sandboxPrefix = "/sandbox"

// NewAPNsServer starts a fake APNs on 127.0.0.1 with a new signing key, and
// stops it when the test ends.
func NewAPNsServer(t testing.TB) *APNsServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("pushtest: generate APNs key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("pushtest: encode APNs key: %v", err)
	}
	s := &APNsServer{
		KeyID:    "ABC123DEFG",
		TeamID:   "TEAM456789",
		Topic:    "chat.parley.app",
		t:        t,
		pub:      &key.PublicKey,
		replies:  make(map[string]APNsReply),
		verified: make(map[string]time.Time),
	}
	s.KeyFile = filepath.Join(t.TempDir(), "AuthKey_"+s.KeyID+".p8")
	if err := os.WriteFile(s.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatalf("pushtest: write APNs key: %v", err)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// ProductionURL is the host to configure as APNsConfig.ProductionURL.
func (s *APNsServer) ProductionURL() string { return s.srv.URL }

// SandboxURL is the host to configure as APNsConfig.SandboxURL.
func (s *APNsServer) SandboxURL() string { return s.srv.URL + sandboxPrefix }

// Config returns an APNsConfig for this server: its key, ids, both URLs and
// its certificate.
func (s *APNsServer) Config() push.APNsConfig {
	return push.APNsConfig{
		KeyFile:       s.KeyFile,
		KeyID:         s.KeyID,
		TeamID:        s.TeamID,
		Topic:         s.Topic,
		ProductionURL: s.ProductionURL(),
		SandboxURL:    s.SandboxURL(),
		RootCAs:       rootCAs(s.srv),
	}
}

// Reply sets how the server answers notifications for token.
func (s *APNsServer) Reply(token string, r APNsReply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies[token] = r
}

// Requests returns the well-formed notifications received so far, in order.
func (s *APNsServer) Requests() []APNsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]APNsRequest(nil), s.requests...)
}

// Count returns how many well-formed notifications were received, recorded
// or not.
func (s *APNsServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// SetRecording turns the recording of requests on (the default) or off, for
// benchmarks.
func (s *APNsServer) SetRecording(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRecord = !on
}

// apnsError is a rejection: the status and reason a real APNs would answer.
type apnsError struct {
	status int
	reason string
	detail string
}

func (e *apnsError) Error() string { return e.reason + ": " + e.detail }

func (s *APNsServer) handle(w http.ResponseWriter, r *http.Request) {
	req, err := s.parse(r)
	if err != nil {
		var ae *apnsError
		if !errors.As(err, &ae) {
			ae = &apnsError{http.StatusBadRequest, "BadRequest", err.Error()}
		}
		// Our senders should never send what APNs would refuse.
		s.t.Errorf("pushtest: APNs refused a malformed request: %v", ae)
		writeAPNs(w, ae.status, map[string]any{"reason": ae.reason})
		return
	}
	s.mu.Lock()
	s.count++
	if !s.noRecord {
		s.requests = append(s.requests, req)
	}
	reply, ok := s.replies[req.Token]
	n := s.count
	s.mu.Unlock()

	if !delay(r, reply.Delay) {
		return
	}
	w.Header().Set("apns-id", fmt.Sprintf("8A3F5C1E-0000-4000-8000-%012X", n))
	if !ok || reply.Status == 0 || reply.Status == http.StatusOK {
		w.WriteHeader(http.StatusOK)
		return
	}
	if reply.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((reply.RetryAfter+time.Second-1)/time.Second)))
	}
	body := map[string]any{"reason": reply.Reason}
	if reply.Status == http.StatusGone {
		ts := reply.Timestamp
		if ts.IsZero() {
			ts = time.Now()
		}
		body["timestamp"] = ts.UnixMilli()
	}
	writeAPNs(w, reply.Status, body)
}

func writeAPNs(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body) // the client went away: nothing to do
}

// parse checks a request as APNs would and returns what it carried.
func (s *APNsServer) parse(r *http.Request) (APNsRequest, error) {
	req := APNsRequest{Environment: push.EnvProduction}
	path := r.URL.Path
	if p, ok := strings.CutPrefix(path, sandboxPrefix); ok {
		req.Environment, path = push.EnvSandbox, p
	}
	if r.ProtoMajor != 2 {
		return req, &apnsError{http.StatusBadRequest, "BadRequest", "not HTTP/2: " + r.Proto}
	}
	if r.Method != http.MethodPost {
		return req, &apnsError{http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method}
	}
	token, ok := strings.CutPrefix(path, "/3/device/")
	if !ok {
		return req, &apnsError{http.StatusNotFound, "BadPath", path}
	}
	if token == "" {
		return req, &apnsError{http.StatusBadRequest, "MissingDeviceToken", path}
	}
	req.Token = token
	if err := s.checkJWT(r.Header.Get("Authorization")); err != nil {
		return req, err
	}

	h := r.Header
	req.Topic, req.PushType, req.Priority = h.Get("apns-topic"), h.Get("apns-push-type"), h.Get("apns-priority")
	req.CollapseID = h.Get("apns-collapse-id")
	switch {
	case req.Topic == "":
		return req, &apnsError{http.StatusBadRequest, "MissingTopic", ""}
	case req.Topic != s.Topic:
		return req, &apnsError{http.StatusBadRequest, "BadTopic", req.Topic}
	case req.PushType != "alert":
		return req, &apnsError{http.StatusBadRequest, "InvalidPushType", "want alert, got " + req.PushType}
	case req.Priority != "" && req.Priority != "10" && req.Priority != "5" && req.Priority != "1":
		return req, &apnsError{http.StatusBadRequest, "BadPriority", req.Priority}
	case len(req.CollapseID) > 64:
		return req, &apnsError{http.StatusBadRequest, "BadCollapseId", req.CollapseID}
	}
	if v := h.Get("apns-expiration"); v != "" {
		exp, err := strconv.ParseInt(v, 10, 64)
		if err != nil || exp < 0 {
			return req, &apnsError{http.StatusBadRequest, "BadExpirationDate", v}
		}
		req.Expiration = exp
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return req, err
	}
	switch {
	case len(body) == 0:
		return req, &apnsError{http.StatusBadRequest, "PayloadEmpty", ""}
	case len(body) > 4096:
		return req, &apnsError{http.StatusRequestEntityTooLarge, "PayloadTooLarge", strconv.Itoa(len(body)) + " bytes"}
	}
	req.Payload = body
	var p map[string]json.RawMessage
	if err := json.Unmarshal(body, &p); err != nil {
		return req, &apnsError{http.StatusBadRequest, "BadPayload", err.Error()}
	}
	var aps struct {
		Alert struct {
			Title string `json:"title"`
			Body  string `json:"body"`
		} `json:"alert"`
		Badge          *int   `json:"badge"`
		Sound          string `json:"sound"`
		ThreadID       string `json:"thread-id"`
		MutableContent int    `json:"mutable-content"`
	}
	if err := json.Unmarshal(p["aps"], &aps); err != nil {
		return req, &apnsError{http.StatusBadRequest, "BadPayload", "aps: " + err.Error()}
	}
	if aps.Alert.Title == "" && aps.Alert.Body == "" {
		return req, &apnsError{http.StatusBadRequest, "BadPayload", "an alert without title or body"}
	}
	if aps.MutableContent != 0 && aps.MutableContent != 1 {
		return req, &apnsError{http.StatusBadRequest, "BadPayload", "mutable-content " + strconv.Itoa(aps.MutableContent)}
	}
	req.Title, req.Body, req.Badge, req.Sound, req.ThreadID = aps.Alert.Title, aps.Alert.Body, aps.Badge, aps.Sound, aps.ThreadID
	req.MutableContent = aps.MutableContent
	req.Data = make(map[string]any)
	for k, v := range p {
		if k == "aps" {
			continue
		}
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			return req, &apnsError{http.StatusBadRequest, "BadPayload", k + ": " + err.Error()}
		}
		req.Data[k] = x
	}
	return req, nil
}

// checkJWT verifies the provider token as APNs does: an ES256 JWT signed
// with our key, its kid our key id, its issuer our team, issued within the
// last hour.
func (s *APNsServer) checkJWT(auth string) error {
	bearer, ok := strings.CutPrefix(auth, "bearer ")
	if !ok || bearer == "" {
		return &apnsError{http.StatusForbidden, "MissingProviderToken", "authorization " + strconv.Quote(auth)}
	}
	s.mu.Lock()
	iat, ok := s.verified[bearer]
	s.mu.Unlock()
	if !ok {
		var err error
		if iat, err = s.verifyJWT(bearer); err != nil {
			return err
		}
		// Like APNs, verify a token's signature once, not on every
		// notification: it would dominate benchmarks.
		s.mu.Lock()
		s.verified[bearer] = iat
		s.mu.Unlock()
	}
	if age := time.Since(iat); age > time.Hour || age < -time.Minute {
		return &apnsError{http.StatusForbidden, "ExpiredProviderToken", "issued " + age.String() + " ago"}
	}
	return nil
}

// verifyJWT checks a provider token's signature and claims, and returns when
// it was issued.
func (s *APNsServer) verifyJWT(bearer string) (time.Time, error) {
	tok, err := jwt.Parse(bearer, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != s.KeyID {
			return nil, fmt.Errorf("kid %q, want %q", t.Header["kid"], s.KeyID)
		}
		return s.pub, nil
	}, jwt.WithValidMethods([]string{"ES256"}))
	if err != nil {
		return time.Time{}, &apnsError{http.StatusForbidden, "InvalidProviderToken", err.Error()}
	}
	claims, _ := tok.Claims.(jwt.MapClaims)
	if iss, _ := claims["iss"].(string); iss != s.TeamID {
		return time.Time{}, &apnsError{http.StatusForbidden, "InvalidProviderToken", fmt.Sprintf("iss %q, want %q", claims["iss"], s.TeamID)}
	}
	iat, ok := claims["iat"].(float64)
	if !ok {
		return time.Time{}, &apnsError{http.StatusForbidden, "InvalidProviderToken", "no iat"}
	}
	return time.Unix(int64(iat), 0), nil
}

// delay waits d or until the request is canceled, and reports whether the
// client is still waiting.
func delay(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// rootCAs returns a pool holding the test server's certificate.
func rootCAs(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}
