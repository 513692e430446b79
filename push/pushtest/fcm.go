package pushtest

import (
	"crypto/rand"
	"crypto/rsa"
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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"

	"github.com/parleychat/parley/push"
)

// FCMServer is a fake FCM v1 API: POST /v1/projects/{project}/messages:send,
// and the OAuth 2.0 token endpoint that a service account exchanges its
// signed assertion at (POST /token). CredentialsFile is a service-account key
// whose token_uri points here, so a sender runs its real authentication.
//
// By default it accepts every well-formed message; Reply makes it answer a
// token with one of FCM's errors, with the bodies FCM sends.
type FCMServer struct {
	// ProjectID is the project the server serves.
	ProjectID string
	// CredentialsFile is a freshly generated service-account key file.
	CredentialsFile string

	t           testing.TB
	srv         *httptest.Server
	pub         *rsa.PublicKey
	clientEmail string

	mu           sync.Mutex // guards the fields below
	replies      map[string]FCMReply
	requests     []FCMRequest
	count        int
	noRecord     bool
	accessTokens map[string]bool
}

// FCMError is an FCM error code, as sent in the errorCode of the
// google.firebase.fcm.v1.FcmError detail of an error response.
type FCMError string

// FCM errors the fake can answer, each with its HTTP status and canonical
// status as FCM sends them.
const (
	FCMUnregistered     FCMError = "UNREGISTERED"           // 404 NOT_FOUND: the app was uninstalled, or the token expired
	FCMSenderIDMismatch FCMError = "SENDER_ID_MISMATCH"     // 403 PERMISSION_DENIED: the token belongs to another project
	FCMQuotaExceeded    FCMError = "QUOTA_EXCEEDED"         // 429 RESOURCE_EXHAUSTED
	FCMInternal         FCMError = "INTERNAL"               // 500 INTERNAL
	FCMUnavailable      FCMError = "UNAVAILABLE"            // 503 UNAVAILABLE (the Firebase SDK retries it itself)
	FCMInvalidArgument  FCMError = "INVALID_ARGUMENT"       // 400 INVALID_ARGUMENT
	FCMThirdPartyAuth   FCMError = "THIRD_PARTY_AUTH_ERROR" // 401 UNAUTHENTICATED: bad APNs credentials in the Firebase project
)

// fcmStatus returns the HTTP status, canonical status and message FCM
// answers an error code with.
func fcmStatus(code FCMError) (status int, canonical, message string) {
	switch code {
	case FCMUnregistered:
		return http.StatusNotFound, "NOT_FOUND", "Requested entity was not found."
	case FCMSenderIDMismatch:
		return http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch"
	case FCMQuotaExceeded:
		return http.StatusTooManyRequests, "RESOURCE_EXHAUSTED",
			"Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'."
	case FCMUnavailable:
		return http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable."
	case FCMInvalidArgument:
		return http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"
	case FCMThirdPartyAuth:
		return http.StatusUnauthorized, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"
	}
	return http.StatusInternalServerError, "INTERNAL", "Internal error encountered."
}

// FCMReply is how the fake answers one token.
type FCMReply struct {
	// Error is the error to answer; "" accepts the message.
	Error FCMError
	// RetryAfter, if positive, is sent as a Retry-After header in seconds.
	RetryAfter time.Duration
	// Delay holds the answer back this long, or until the client gives up:
	// for timeouts.
	Delay time.Duration
}

// FCMRequest is one message the fake received and accepted as well formed.
type FCMRequest struct {
	Token             string
	Data              map[string]string
	Priority          string // android.priority
	TTL               string // android.ttl, e.g. "86400s"
	CollapseKey       string // android.collapse_key
	Title             string // android.notification.title
	Body              string // android.notification.body
	Tag               string // android.notification.tag
	Sound             string // android.notification.sound
	NotificationCount *int   // android.notification.notification_count
	Raw               []byte // the whole JSON request
}

// NewFCMServer starts a fake FCM on 127.0.0.1 with a new service account,
// and stops it when the test ends.
func NewFCMServer(t testing.TB) *FCMServer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("pushtest: generate service-account key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("pushtest: encode service-account key: %v", err)
	}
	s := &FCMServer{
		ProjectID:    "parley-test",
		t:            t,
		pub:          &key.PublicKey,
		clientEmail:  "push@parley-test.iam.gserviceaccount.com",
		replies:      make(map[string]FCMReply),
		accessTokens: make(map[string]bool),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.srv.Close)

	creds, err := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     s.ProjectID,
		"private_key_id": "0123456789abcdef",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   s.clientEmail,
		"client_id":      "100000000000000000001",
		"token_uri":      s.tokenURL(),
	}, "", "  ")
	if err != nil {
		t.Fatalf("pushtest: encode service account: %v", err)
	}
	s.CredentialsFile = filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(s.CredentialsFile, creds, 0o600); err != nil {
		t.Fatalf("pushtest: write service account: %v", err)
	}
	return s
}

// Endpoint is the base URL to configure as FCMConfig.Endpoint.
func (s *FCMServer) Endpoint() string { return s.srv.URL + "/v1" }

func (s *FCMServer) tokenURL() string { return s.srv.URL + "/token" }

// Config returns an FCMConfig for this server: its credentials and
// endpoint (the project id comes from the credentials).
func (s *FCMServer) Config() push.FCMConfig {
	return push.FCMConfig{CredentialsFile: s.CredentialsFile, Endpoint: s.Endpoint()}
}

// Reply sets how the server answers messages for token.
func (s *FCMServer) Reply(token string, r FCMReply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies[token] = r
}

// Requests returns the well-formed messages received so far, in order.
func (s *FCMServer) Requests() []FCMRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]FCMRequest(nil), s.requests...)
}

// Count returns how many well-formed messages were received, recorded or not.
func (s *FCMServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// AccessTokens returns how many access tokens the token endpoint issued.
func (s *FCMServer) AccessTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accessTokens)
}

// SetRecording turns the recording of requests on (the default) or off, for
// benchmarks.
func (s *FCMServer) SetRecording(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRecord = !on
}

func (s *FCMServer) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.handleToken(w, r)
		return
	}
	req, err := s.parse(r)
	if err != nil {
		var fe *fcmRejection
		if !errors.As(err, &fe) {
			fe = &fcmRejection{FCMInvalidArgument, err.Error()}
		}
		s.t.Errorf("pushtest: FCM refused a malformed request: %v", fe)
		writeFCMError(w, fe.code, fe.detail, 0)
		return
	}
	s.mu.Lock()
	s.count++
	if !s.noRecord {
		s.requests = append(s.requests, req)
	}
	reply := s.replies[req.Token]
	n := s.count
	s.mu.Unlock()

	if !delay(r, reply.Delay) {
		return
	}
	if reply.Error != "" {
		writeFCMError(w, reply.Error, "", reply.RetryAfter)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"name": fmt.Sprintf("projects/%s/messages/%d", s.ProjectID, n)})
}

// fcmRejection is a malformed request, answered with code.
type fcmRejection struct {
	code   FCMError
	detail string
}

func (e *fcmRejection) Error() string { return string(e.code) + ": " + e.detail }

// writeFCMError writes an FCM error response: a google.rpc.Status whose
// details carry the FcmError code (and, for INVALID_ARGUMENT, the
// BadRequest field violation), as FCM does.
func writeFCMError(w http.ResponseWriter, code FCMError, message string, retryAfter time.Duration) {
	status, canonical, defaultMessage := fcmStatus(code)
	if message == "" {
		message = defaultMessage
	}
	details := []map[string]any{{
		"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
		"errorCode": string(code),
	}}
	if code == FCMInvalidArgument {
		details = append(details, map[string]any{
			"@type": "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []map[string]string{
				{"field": "message.token", "description": message},
			},
		})
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":    status,
		"message": message,
		"status":  canonical,
		"details": details,
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

var ttlPattern = regexp.MustCompile(`^\d+(\.\d{1,9})?s$`)

// parse checks a messages:send request as FCM would and returns what it
// carried.
func (s *FCMServer) parse(r *http.Request) (FCMRequest, error) {
	var req FCMRequest
	want := "/v1/projects/" + s.ProjectID + "/messages:send"
	if r.Method != http.MethodPost || r.URL.Path != want {
		return req, &fcmRejection{FCMInvalidArgument, fmt.Sprintf("%s %s, want POST %s", r.Method, r.URL.Path, want)}
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	authorized := s.accessTokens[bearer]
	s.mu.Unlock()
	if !authorized {
		return req, &fcmRejection{FCMThirdPartyAuth, "no valid access token: " + strconv.Quote(r.Header.Get("Authorization"))}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return req, err
	}
	req.Raw = body
	var m struct {
		ValidateOnly bool `json:"validate_only"`
		Message      struct {
			Token     string            `json:"token"`
			Topic     string            `json:"topic"`
			Condition string            `json:"condition"`
			Data      map[string]string `json:"data"`
			Android   *struct {
				CollapseKey  string `json:"collapse_key"`
				Priority     string `json:"priority"`
				TTL          string `json:"ttl"`
				Notification *struct {
					Title             string `json:"title"`
					Body              string `json:"body"`
					Tag               string `json:"tag"`
					Sound             string `json:"sound"`
					NotificationCount *int   `json:"notification_count"`
				} `json:"notification"`
			} `json:"android"`
		} `json:"message"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return req, &fcmRejection{FCMInvalidArgument, "body: " + err.Error()}
	}
	msg := m.Message
	switch {
	case m.ValidateOnly:
		return req, &fcmRejection{FCMInvalidArgument, "validate_only set"}
	case msg.Token == "" || msg.Topic != "" || msg.Condition != "":
		return req, &fcmRejection{FCMInvalidArgument, "want exactly a token as target"}
	case msg.Android == nil || msg.Android.Notification == nil:
		return req, &fcmRejection{FCMInvalidArgument, "no android notification"}
	case msg.Android.Priority != "" && msg.Android.Priority != "normal" && msg.Android.Priority != "high":
		return req, &fcmRejection{FCMInvalidArgument, "android.priority " + msg.Android.Priority}
	case msg.Android.TTL != "" && !ttlPattern.MatchString(msg.Android.TTL):
		return req, &fcmRejection{FCMInvalidArgument, "android.ttl " + msg.Android.TTL}
	case len(body) > 4096+1024: // FCM's limit is 4 KiB of payload; allow for the envelope
		return req, &fcmRejection{FCMInvalidArgument, "Message is too big"}
	}
	n := msg.Android.Notification
	req.Token, req.Data = msg.Token, msg.Data
	req.Priority, req.TTL, req.CollapseKey = msg.Android.Priority, msg.Android.TTL, msg.Android.CollapseKey
	req.Title, req.Body, req.Tag, req.Sound, req.NotificationCount = n.Title, n.Body, n.Tag, n.Sound, n.NotificationCount
	return req, nil
}

// handleToken is the OAuth 2.0 token endpoint for service accounts (the
// JWT bearer grant, RFC 7523): it checks the assertion's signature, issuer,
// audience and scope, and issues an access token.
func (s *FCMServer) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := s.checkAssertion(r); err != nil {
		s.t.Errorf("pushtest: FCM token endpoint refused an assertion: %v", err)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": err.Error()})
		return
	}
	s.mu.Lock()
	tok := fmt.Sprintf("ya29.fake-%d", len(s.accessTokens)+1)
	s.accessTokens[tok] = true
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3599})
}

func (s *FCMServer) checkAssertion(r *http.Request) error {
	if r.Method != http.MethodPost {
		return fmt.Errorf("method %s", r.Method)
	}
	if err := r.ParseForm(); err != nil {
		return err
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		return fmt.Errorf("grant_type %q", g)
	}
	tok, err := jwt.Parse(r.PostForm.Get("assertion"), func(*jwt.Token) (any, error) { return s.pub, nil },
		jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	claims, _ := tok.Claims.(jwt.MapClaims)
	if iss, _ := claims["iss"].(string); iss != s.clientEmail {
		return fmt.Errorf("iss %q, want %q", iss, s.clientEmail)
	}
	if !claims.VerifyAudience(s.tokenURL(), true) {
		return fmt.Errorf("aud %v, want %q", claims["aud"], s.tokenURL())
	}
	scope, _ := claims["scope"].(string)
	if !strings.Contains(scope, "https://www.googleapis.com/auth/cloud-platform") &&
		!strings.Contains(scope, "https://www.googleapis.com/auth/firebase.messaging") {
		return fmt.Errorf("scope %q allows no FCM", scope)
	}
	return nil
}
