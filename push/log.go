package push

import (
	"context"
	"log/slog"
)

// Log is a Sender for development: it logs what would be sent and reports
// every notification as Sent. It serves every platform. The notification's
// text (title and body: a message's sender and words) is logged at Debug
// only: at Info a line says that a notification would go out, to whom and
// how long its text is, so that message text never reaches logs kept at
// Info.
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
		slog.String("thread", n.ThreadID),
		slog.Int("badge", n.Badge),
		slog.Int("title_len", len(n.Title)),
		slog.Int("body_len", len(n.Body)),
	}
	if d.Environment != EnvUnknown {
		attrs = append(attrs, slog.String("environment", string(d.Environment)))
	}
	if !n.Expiry.IsZero() {
		attrs = append(attrs, slog.Time("expiry", n.Expiry))
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "push notification (not sent)", attrs...)
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.LogAttrs(ctx, slog.LevelDebug, "push notification text (not sent)", slog.String("token", shortToken(d.Token)),
			slog.String("title", n.Title), slog.String("body", n.Body), slog.Any("data", n.Data))
	}
	return Result{Outcome: Sent}
}
