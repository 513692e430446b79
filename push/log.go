package push

import (
	"context"
	"log/slog"
)

// Log is a Sender for development: it logs what would be sent, at Info, and
// reports every notification as Sent. It serves every platform.
type Log struct {
	log *slog.Logger
}

// NewLog returns a Log sender writing to log (nowhere if nil).
func NewLog(log *slog.Logger) *Log {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Log{log: log.With("component", "push", "provider", "log")}
}

// Send implements Sender.
func (l *Log) Send(ctx context.Context, d Device, n Notification) Result {
	attrs := []slog.Attr{
		slog.String("platform", string(d.Platform)),
		slog.String("token", shortToken(d.Token)),
		slog.String("title", n.Title),
		slog.String("body", n.Body),
		slog.String("thread", n.ThreadID),
		slog.Int("badge", n.Badge),
		slog.Any("data", n.Data),
	}
	if d.Environment != EnvUnknown {
		attrs = append(attrs, slog.String("environment", string(d.Environment)))
	}
	if !n.Expiry.IsZero() {
		attrs = append(attrs, slog.Time("expiry", n.Expiry))
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "push notification (not sent)", attrs...)
	return Result{Outcome: Sent}
}
