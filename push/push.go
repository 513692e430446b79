package push

import (
	"context"
	"fmt"
	"log/slog"
)

// Platform names the push service a device token belongs to.
type Platform string

// Platforms.
const (
	PlatformAPNs Platform = "apns" // Apple Push Notification service (iOS, macOS)
	PlatformFCM  Platform = "fcm"  // Firebase Cloud Messaging (Android)
)

// Environment is the APNs environment a device token was issued for: the app
// build decides it (development builds get sandbox tokens, TestFlight and
// App Store builds production ones) and the app reports it with its token.
type Environment string

// APNs environments.
const (
	// EnvUnknown: the app did not say. The token is sent to the production
	// host, and a BadDeviceToken answer is then not proof that the token is
	// invalid (it may be a sandbox token), so it is not reported as one.
	EnvUnknown    Environment = ""
	EnvProduction Environment = "production"
	EnvSandbox    Environment = "sandbox"
)

// Device is one push token of one app installation.
type Device struct {
	Platform Platform
	// Token is the provider's device token: hex for APNs, an opaque string for
	// FCM.
	Token string
	// Environment is the APNs environment of Token; ignored for FCM.
	Environment Environment
}

// Sender sends one notification to one device and reports what happened.
//
// It is the one thing the outbox needs from a provider, so it is one method:
// implementations make a single attempt bounded by their own timeout (and by
// ctx), never retry on their own, and return every failure in the Result
// rather than as a separate error so that the caller must look at the
// Outcome. Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, d Device, n Notification) Result
}

// Router is a Sender that hands each device to the Sender of its platform.
// A device whose platform has no Sender gets a Permanent result wrapping
// ErrNotConfigured.
type Router struct {
	senders map[Platform]Sender
}

// NewRouter returns a Router over senders, keyed by platform. A platform that
// is absent (or whose Sender is nil) is not configured: in development one
// Log sender can serve every platform. log, if not nil, is told which
// platforms are configured.
func NewRouter(senders map[Platform]Sender, log *slog.Logger) *Router {
	r := &Router{senders: make(map[Platform]Sender, len(senders))}
	names := make([]string, 0, len(senders))
	for p, s := range senders {
		if s != nil {
			r.senders[p] = s
			names = append(names, string(p))
		}
	}
	if log != nil {
		log.Info("push providers", "component", "push", "platforms", names)
	}
	return r
}

// Send implements Sender.
func (r *Router) Send(ctx context.Context, d Device, n Notification) Result {
	s, ok := r.senders[d.Platform]
	if !ok {
		return Result{
			Outcome: Permanent,
			Reason:  ReasonNotConfigured,
			Err:     fmt.Errorf("push: %w: platform %q", ErrNotConfigured, d.Platform),
		}
	}
	return s.Send(ctx, d, n)
}

// Configured reports whether the Router has a Sender for platform p.
func (r *Router) Configured(p Platform) bool {
	_, ok := r.senders[p]
	return ok
}

// shortToken returns the start of a device token, enough to find it in logs
// without writing whole tokens there.
func shortToken(t string) string {
	if len(t) <= 8 {
		return t
	}
	return t[:8] + "…"
}
