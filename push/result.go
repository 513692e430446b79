package push

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Outcome is what became of one send, and so what the caller does next.
type Outcome uint8

// Outcomes. The zero Outcome is none of them, so that a Result left empty by
// mistake is never taken for a success.
const (
	// Sent: the provider accepted the notification. It may still never be
	// shown (the device is off until the notification expires).
	Sent Outcome = iota + 1
	// InvalidToken: the provider says the token will never work again. Delete
	// it, except an APNs token registered again after Result.InvalidSince.
	InvalidToken
	// Retryable: a rate limit, a provider failure, a network error or a
	// timeout. Send again after Backoff(attempt, Result.RetryAfter).
	Retryable
	// Permanent: this notification cannot be sent: the provider refused it
	// (other 4xx), it is too large or expired, or the provider is not
	// configured or misconfigured. Retrying the same send will not help.
	Permanent
)

// String returns the outcome's snake_case name, for logs and metrics.
func (o Outcome) String() string {
	switch o {
	case Sent:
		return "sent"
	case InvalidToken:
		return "invalid_token"
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	}
	return "outcome_" + strconv.Itoa(int(o))
}

// Result says precisely what happened to one send.
type Result struct {
	Outcome Outcome
	// Reason is the provider's reason code as it sent it (APNs "Unregistered",
	// "BadDeviceToken"; FCM "UNREGISTERED", "QUOTA_EXCEEDED"), or one of the
	// Reason constants of this package when the provider gave none or was
	// never reached. Empty when Sent.
	Reason string
	// Status is the provider's HTTP status, 0 when there was no response.
	Status int
	// RetryAfter is how long the provider asked us to wait (its Retry-After
	// header), 0 when it did not say. Backoff never returns less.
	RetryAfter time.Duration
	// InvalidSince is, for an APNs 410, the last time APNs confirmed that the
	// token was no longer valid; zero otherwise.
	InvalidSince time.Time
	// ID is the provider's id of the accepted notification: the apns-id, or
	// the FCM message name ("projects/p/messages/123"). Empty unless Sent.
	ID string
	// Err describes the failure; nil when Sent. It wraps one of this
	// package's sentinel errors when the failure is ours (ErrNotConfigured,
	// ErrBadDevice, ErrPayloadTooLarge, ErrExpired), the context's error on a
	// timeout, and the transport's error on a network failure.
	Err error
}

// LogValue logs a Result as a group of its non-empty fields.
func (r Result) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("outcome", r.Outcome.String())}
	if r.Reason != "" {
		attrs = append(attrs, slog.String("reason", r.Reason))
	}
	if r.Status != 0 {
		attrs = append(attrs, slog.Int("status", r.Status))
	}
	if r.RetryAfter != 0 {
		attrs = append(attrs, slog.Duration("retry_after", r.RetryAfter))
	}
	if !r.InvalidSince.IsZero() {
		attrs = append(attrs, slog.Time("invalid_since", r.InvalidSince))
	}
	if r.ID != "" {
		attrs = append(attrs, slog.String("id", r.ID))
	}
	if r.Err != nil {
		attrs = append(attrs, slog.String("err", r.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// Reasons set by this package (providers' own reason codes are passed
// through as they come).
const (
	ReasonNotConfigured   = "not_configured"    // no provider for the platform
	ReasonBadDevice       = "bad_device"        // unknown environment or wrong platform
	ReasonMalformedToken  = "malformed_token"   // empty, or not hex for APNs: never valid
	ReasonPayloadTooLarge = "payload_too_large" // over the provider's limit; not sent
	ReasonExpired         = "expired"           // Notification.Expiry has passed; not sent
	ReasonBadNotification = "bad_notification"  // could not be encoded, or the SDK refused it
	ReasonTimeout         = "timeout"           // the send's deadline passed
	ReasonCanceled        = "canceled"          // the caller's context was canceled
	ReasonNetwork         = "network"           // no response from the provider
)

// Errors wrapped by Result.Err when a send failed on our side of the wire.
var (
	// ErrNotConfigured: no provider is configured for the device's platform.
	ErrNotConfigured = errors.New("provider not configured")
	// ErrBadDevice: the Device is malformed: an empty or impossible token, an
	// unknown environment, or a platform the Sender does not serve.
	ErrBadDevice = errors.New("bad device")
	// ErrPayloadTooLarge: the encoded notification is over the provider's
	// limit (4 KiB).
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrExpired: the notification's expiry passed before it could be sent.
	ErrExpired = errors.New("notification expired")
)

// Backoff bounds: the first retry waits up to BackoffBase, each further one
// up to twice as long, never more than BackoffCap (unless the provider asked
// for longer).
const (
	BackoffBase = time.Second
	BackoffCap  = 10 * time.Minute
)

// Backoff returns how long to wait before retrying a send that has failed
// attempt times (1 after the first failure): exponential backoff with full
// jitter, a random duration in [0, min(BackoffCap, BackoffBase·2^(attempt-1))],
// so that a provider outage does not bring every retry back at once; but never
// less than retryAfter, the provider's own request (Result.RetryAfter).
// It is safe for concurrent use.
func Backoff(attempt int, retryAfter time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	ceil := BackoffCap
	if attempt <= 30 { // beyond, the shift would overflow; the cap wins anyway
		if d := BackoffBase << (attempt - 1); d < ceil {
			ceil = d
		}
	}
	d := rand.N(ceil + 1)
	if d < retryAfter {
		d = retryAfter
	}
	return d
}

// maxRetryAfter caps a provider's Retry-After: a notification is not worth
// keeping longer than its default lifetime.
const maxRetryAfter = DefaultTTL

// parseRetryAfter reads a Retry-After header value, in seconds or as an HTTP
// date [RFC 9110 10.2.3]. It returns 0 for an absent, malformed or past value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
