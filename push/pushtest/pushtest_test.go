package pushtest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2/token"
	"go.uber.org/goleak"

	"github.com/parleychat/parley/push/pushtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recTB is a testing.TB whose Errorf is recorded instead of failing the
// test: to check that the fakes report malformed requests.
type recTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// take returns and forgets the recorded errors.
func (r *recTB) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.errs
	r.errs = nil
	return e
}

func TestAPNsServerRejectsMalformedRequests(t *testing.T) {
	rec := &recTB{TB: t}
	srv := pushtest.NewAPNsServer(rec)
	cfg := srv.Config()
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs}, ForceAttemptHTTP2: true}
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs}}
	t.Cleanup(h2.CloseIdleConnections)
	t.Cleanup(h1.CloseIdleConnections)

	key, err := token.AuthKeyFromFile(srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k *ecdsa.PrivateKey, kid, iss string, iat time.Time) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": iss, "iat": iat.Unix()})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return "bearer " + s
	}
	good := sign(key, srv.KeyID, srv.TeamID, time.Now())
	const okPayload = `{"aps":{"alert":{"title":"t","body":"b"},"badge":1,"sound":"default","thread-id":"g/x"},"inbox":"g/x"}`

	tests := []struct {
		name       string
		h1         bool
		path       string
		auth       string
		topic      string
		pushType   string
		body       string
		wantStatus int
		wantReason string
	}{
		{"well formed", false, "/3/device/aa", good, srv.Topic, "alert", okPayload, 200, ""},
		{"well formed, sandbox", false, "/sandbox/3/device/aa", good, srv.Topic, "alert", okPayload, 200, ""},
		{"HTTP/1.1", true, "/3/device/aa", good, srv.Topic, "alert", okPayload, 400, "BadRequest"},
		{"no token in path", false, "/3/device/", good, srv.Topic, "alert", okPayload, 400, "MissingDeviceToken"},
		{"no authorization", false, "/3/device/aa", "", srv.Topic, "alert", okPayload, 403, "MissingProviderToken"},
		{"signed by another key", false, "/3/device/aa", sign(otherKey, srv.KeyID, srv.TeamID, time.Now()), srv.Topic, "alert", okPayload, 403, "InvalidProviderToken"},
		{"wrong kid", false, "/3/device/aa", sign(key, "OTHERKEYID", srv.TeamID, time.Now()), srv.Topic, "alert", okPayload, 403, "InvalidProviderToken"},
		{"wrong team", false, "/3/device/aa", sign(key, srv.KeyID, "OTHERTEAM", time.Now()), srv.Topic, "alert", okPayload, 403, "InvalidProviderToken"},
		{"stale token", false, "/3/device/aa", sign(key, srv.KeyID, srv.TeamID, time.Now().Add(-2*time.Hour)), srv.Topic, "alert", okPayload, 403, "ExpiredProviderToken"},
		{"no topic", false, "/3/device/aa", good, "", "alert", okPayload, 400, "MissingTopic"},
		{"wrong topic", false, "/3/device/aa", good, "com.other.app", "alert", okPayload, 400, "BadTopic"},
		{"background push", false, "/3/device/aa", good, srv.Topic, "background", okPayload, 400, "InvalidPushType"},
		{"empty payload", false, "/3/device/aa", good, srv.Topic, "alert", "", 400, "PayloadEmpty"},
		{"payload too large", false, "/3/device/aa", good, srv.Topic, "alert", `{"aps":{"alert":{"title":"t"}},"x":"` + strings.Repeat("x", 4096) + `"}`, 413, "PayloadTooLarge"},
		{"no alert", false, "/3/device/aa", good, srv.Topic, "alert", `{"aps":{"badge":1}}`, 400, "BadPayload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.ProductionURL()+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{"authorization": tt.auth, "apns-topic": tt.topic, "apns-push-type": tt.pushType,
				"apns-priority": "10", "apns-expiration": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			tr := h2
			if tt.h1 {
				tr = h1
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Reason string }
			b, _ := io.ReadAll(resp.Body)
			_ = json.Unmarshal(b, &body)
			if resp.StatusCode != tt.wantStatus || body.Reason != tt.wantReason {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body.Reason, tt.wantStatus, tt.wantReason)
			}
			errs := rec.take()
			if tt.wantStatus == 200 && len(errs) != 0 {
				t.Errorf("the fake reported a well-formed request: %v", errs)
			}
			if tt.wantStatus != 200 && (len(errs) != 1 || !strings.Contains(errs[0], tt.wantReason)) {
				t.Errorf("the fake reported %v, want one error naming %s", errs, tt.wantReason)
			}
		})
	}
	if reqs := srv.Requests(); len(reqs) != 2 || reqs[0].Environment != "production" || reqs[1].Environment != "sandbox" {
		t.Errorf("recorded %+v, want the two well-formed requests", reqs)
	}
}

func TestFCMServerRejectsMalformedRequests(t *testing.T) {
	rec := &recTB{TB: t}
	srv := pushtest.NewFCMServer(rec)
	c := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)

	// An assertion signed with the service account's key gets an access
	// token; one signed with another key does not.
	var sa struct {
		PrivateKey  string `json:"private_key"`
		ClientEmail string `json:"client_email"`
		TokenURI    string `json:"token_uri"`
	}
	b, err := os.ReadFile(srv.CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sa); err != nil {
		t.Fatal(err)
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(sa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	assertion := func(aud string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": sa.ClientEmail, "aud": aud, "scope": "https://www.googleapis.com/auth/firebase.messaging",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	getToken := func(assertion string) (int, string) {
		resp, err := c.PostForm(sa.TokenURI, map[string][]string{
			"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			AccessToken string `json:"access_token"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.AccessToken
	}
	if status, _ := getToken(assertion("https://elsewhere/token")); status != 400 || len(rec.take()) != 1 {
		t.Errorf("an assertion for another audience got %d", status)
	}
	status, access := getToken(assertion(sa.TokenURI))
	if status != 200 || access == "" || len(rec.take()) != 0 {
		t.Fatalf("a good assertion got %d %q", status, access)
	}

	send := func(path, auth, body string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.Endpoint()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct {
				Details []struct{ ErrorCode string }
			}
		}
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &e)
		code := ""
		if len(e.Error.Details) > 0 {
			code = e.Error.Details[0].ErrorCode
		}
		return resp.StatusCode, code
	}
	path := "/projects/" + srv.ProjectID + "/messages:send"
	const msg = `{"message":{"token":"t1","android":{"priority":"high","ttl":"60s","notification":{"title":"t"}}}}`
	tests := []struct {
		name       string
		path, auth string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"well formed", path, "Bearer " + access, msg, 200, ""},
		{"no access token", path, "", msg, 401, "THIRD_PARTY_AUTH_ERROR"},
		{"unknown access token", path, "Bearer nope", msg, 401, "THIRD_PARTY_AUTH_ERROR"},
		{"other project", "/projects/other/messages:send", "Bearer " + access, msg, 400, "INVALID_ARGUMENT"},
		{"topic, not token", path, "Bearer " + access, `{"message":{"topic":"news","android":{"notification":{}}}}`, 400, "INVALID_ARGUMENT"},
		{"bad ttl", path, "Bearer " + access, `{"message":{"token":"t","android":{"ttl":"1h","notification":{}}}}`, 400, "INVALID_ARGUMENT"},
		{"not JSON", path, "Bearer " + access, `{`, 400, "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := send(tt.path, tt.auth, tt.body)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("got %d %q, want %d %q", status, code, tt.wantStatus, tt.wantCode)
			}
			errs := rec.take()
			if (tt.wantStatus == 200) != (len(errs) == 0) {
				t.Errorf("the fake reported %v", errs)
			}
		})
	}
	if reqs := srv.Requests(); len(reqs) != 1 || reqs[0].Token != "t1" || !bytes.Contains(reqs[0].Raw, []byte(`"ttl":"60s"`)) {
		t.Errorf("recorded %+v, want the one well-formed request", reqs)
	}
}
