package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
)

// DefaultFCMEndpoint is the FCM v1 API's base URL.
const DefaultFCMEndpoint = "https://fcm.googleapis.com/v1"

// FCMConfig configures the FCM provider.
type FCMConfig struct {
	// CredentialsFile is the path of a Google service-account key (JSON)
	// allowed to send through FCM (role "Firebase Cloud Messaging API
	// Admin"). Required.
	CredentialsFile string
	// ProjectID is the Firebase project. Default: the project_id of the
	// credentials file.
	ProjectID string
	// Endpoint is the FCM v1 API's base URL. Default DefaultFCMEndpoint.
	// Tests point it at a pushtest.FCMServer.
	Endpoint string
	// Timeout bounds each send, including the retries the Firebase SDK makes
	// on its own after a network error or a 503 (which can otherwise take
	// seconds). Default 10s.
	Timeout time.Duration
}

func (c *FCMConfig) setDefaults() {
	if c.Endpoint == "" {
		c.Endpoint = DefaultFCMEndpoint
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// FCM sends notifications through Firebase Cloud Messaging's v1 API, as
// Android notification messages. Safe for concurrent use.
type FCM struct {
	cfg    FCMConfig
	log    *slog.Logger
	client *messaging.Client
}

// NewFCM checks cfg, reads the service account and returns the FCM sender.
// It does not connect: the first send fetches an access token. log may be
// nil.
func NewFCM(ctx context.Context, cfg FCMConfig, log *slog.Logger) (*FCM, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	creds, projectID, err := loadServiceAccount(cfg.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("fcm config: %w", err)
	}
	if cfg.ProjectID == "" {
		cfg.ProjectID = projectID
	}
	if cfg.ProjectID == "" {
		return nil, errors.New("fcm config: ProjectID is required (the credentials file has no project_id)")
	}
	opts := []option.ClientOption{option.WithAuthCredentialsJSON(option.ServiceAccount, creds)}
	if cfg.Endpoint != DefaultFCMEndpoint {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	// The Google client keeps this context to fetch access tokens for as
	// long as it lives: it must outlive a caller's startup deadline.
	ctx = context.WithoutCancel(ctx)
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: cfg.ProjectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("fcm config: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm config: %w", err)
	}
	return &FCM{
		cfg:    cfg,
		log:    log.With("component", "push", "provider", "fcm", "project", cfg.ProjectID),
		client: client,
	}, nil
}

// loadServiceAccount reads a service-account key file and checks that it is
// one, returning its contents and its project id.
func loadServiceAccount(path string) (creds []byte, projectID string, err error) {
	if path == "" {
		return nil, "", errors.New("CredentialsFile (a service-account key) is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("CredentialsFile: %w", err)
	}
	var f struct {
		Type        string `json:"type"`
		ProjectID   string `json:"project_id"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, "", fmt.Errorf("CredentialsFile %q: %w", path, err)
	}
	if f.Type != "service_account" || f.ClientEmail == "" || f.PrivateKey == "" {
		return nil, "", fmt.Errorf("CredentialsFile %q: not a service-account key (type %q)", path, f.Type)
	}
	return b, f.ProjectID, nil
}

// Send implements Sender: one FCM v1 messages:send call.
func (f *FCM) Send(ctx context.Context, d Device, n Notification) Result {
	start := time.Now()
	r := f.send(ctx, d, n)
	f.log.LogAttrs(ctx, slog.LevelDebug, "push send",
		slog.String("token", shortToken(d.Token)),
		slog.Any("result", r),
		slog.Duration("took", time.Since(start)))
	return r
}

func (f *FCM) send(ctx context.Context, d Device, n Notification) Result {
	if d.Platform != PlatformFCM && d.Platform != "" {
		return badDevice("fcm", "platform %q", d.Platform)
	}
	if d.Token == "" {
		return Result{Outcome: InvalidToken, Reason: ReasonMalformedToken,
			Err: fmt.Errorf("fcm: %w: empty token", ErrBadDevice)}
	}
	ttl := DefaultTTL
	if !n.Expiry.IsZero() {
		ttl = time.Until(n.Expiry).Truncate(time.Second)
		if ttl <= 0 {
			return Result{Outcome: Permanent, Reason: ReasonExpired,
				Err: fmt.Errorf("fcm: %w at %s", ErrExpired, n.Expiry.Format(time.RFC3339))}
		}
	}
	badge := n.Badge
	msg := &messaging.Message{
		Token: d.Token,
		Data:  n.Data,
		Android: &messaging.AndroidConfig{
			CollapseKey: n.ThreadID,
			Priority:    "high",
			TTL:         &ttl,
			Notification: &messaging.AndroidNotification{
				Title:             n.Title,
				Body:              n.Body,
				Tag:               n.ThreadID,
				Sound:             "default",
				NotificationCount: &badge,
			},
		},
	}

	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	name, err := f.client.Send(ctx, msg)
	if err == nil {
		return Result{Outcome: Sent, Status: http.StatusOK, ID: name}
	}
	return classifyFCM(ctx, err)
}

// classifyFCM turns an error of messaging.Client.Send into a Result. The
// SDK's helpers (messaging.IsUnregistered, errorutils.*) check the error's
// type with a type assertion, not errors.As: they must see the error as the
// SDK returned it, before any wrapping.
func classifyFCM(ctx context.Context, err error) Result {
	r := Result{Outcome: Permanent}
	resp := errorutils.HTTPResponse(err)
	if resp != nil {
		r.Status = resp.StatusCode
		r.Reason = fcmReason(resp)
	}
	switch {
	case messaging.IsUnregistered(err), messaging.IsSenderIDMismatch(err):
		r.Outcome = InvalidToken
	case resp == nil:
		// No response: a network error or timeout (the SDK reports those as
		// its own error type, or returns the context's error when the
		// deadline passes while it waits to retry), or the SDK refused the
		// message before sending it.
		if errorutils.IsDeadlineExceeded(err) || errorutils.IsUnavailable(err) || errorutils.IsUnknown(err) ||
			errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			r = transportFailure(ctx, "fcm", err)
			if errorutils.IsDeadlineExceeded(err) {
				r.Reason = ReasonTimeout
			}
			return r
		}
		r.Reason = ReasonBadNotification
	case r.Status == http.StatusTooManyRequests, r.Status >= 500:
		r.Outcome = Retryable
		r.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	if r.Status != 0 {
		r.Err = fmt.Errorf("fcm: %d %s: %w", r.Status, r.Reason, err)
	} else {
		r.Err = fmt.Errorf("fcm: %w", err)
	}
	return r
}

// fcmReason returns the most precise error code of an FCM error response:
// the FcmError detail's errorCode ("UNREGISTERED", "QUOTA_EXCEEDED"), else
// the canonical status ("INVALID_ARGUMENT"), else the HTTP status text.
func fcmReason(resp *http.Response) string {
	var body struct {
		Error struct {
			Status  string `json:"status"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // an in-memory copy: cannot fail
		_ = json.Unmarshal(b, &body)                          // not JSON: fall back on the status
	}
	for _, d := range body.Error.Details {
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" && d.ErrorCode != "" {
			return d.ErrorCode
		}
	}
	if body.Error.Status != "" {
		return body.Error.Status
	}
	return http.StatusText(resp.StatusCode)
}
