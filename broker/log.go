package broker

import (
	"context"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// mochiLog quiets mochi-mqtt's logging where it misleads: a refused publish,
// which Parley reports to the client with a reason code, is logged by mochi
// as an error with a dump of the whole packet; here it becomes a debug line
// without the dump. mochi's warning for every client that asks for a short
// keep-alive (a choice of the client's, which mqtt.max_keepalive bounds from
// above) is a debug line too: a client must not fill the node's log.
type mochiLog struct{ slog.Handler }

func (h mochiLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == mqtt.ErrMinimumKeepalive.Error() {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		nr := slog.NewRecord(r.Time, slog.LevelDebug, "short keep-alive", r.PC)
		r.Attrs(func(a slog.Attr) bool { nr.AddAttrs(a); return true })
		return h.Handler.Handle(ctx, nr)
	}
	if r.Message == "publish packet error" {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		nr := slog.NewRecord(r.Time, slog.LevelDebug, "publish refused", r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != "packet" {
				nr.AddAttrs(a)
			}
			return true
		})
		return h.Handler.Handle(ctx, nr)
	}
	if r.Message == "" { // mochi's listeners log EOFs this way
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h mochiLog) WithAttrs(as []slog.Attr) slog.Handler { return mochiLog{h.Handler.WithAttrs(as)} }
func (h mochiLog) WithGroup(name string) slog.Handler    { return mochiLog{h.Handler.WithGroup(name)} }
