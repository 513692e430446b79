package main

import (
	"context"
	"log/slog"

	"github.com/parleychat/parley/push"
)

// pushEnabled reports whether any push provider is configured.
func (c *config) pushEnabled() bool {
	return c.PushAPNsKey != "" || c.PushFCMCreds != "" || c.PushLog
}

// newPushRouter builds the push providers the configuration names, logging
// one line for each that is not configured. It returns nil when none is: push
// is then off. close releases the providers.
func newPushRouter(ctx context.Context, cfg config, log *slog.Logger) (r *push.Router, closeFn func(), err error) {
	closeFn = func() {}
	if !cfg.pushEnabled() {
		log.Info("push notifications off: set push.apns.key_file, push.fcm.credentials_file or push.log to turn them on")
		return nil, closeFn, nil
	}
	plog := log.With("component", "push")
	senders := map[push.Platform]push.Sender{}
	if cfg.PushAPNsKey != "" {
		a, err := push.NewAPNs(push.APNsConfig{KeyFile: cfg.PushAPNsKey, KeyID: cfg.PushAPNsKeyID,
			TeamID: cfg.PushAPNsTeam, Topic: cfg.PushAPNsTopic}, plog)
		if err != nil {
			return nil, closeFn, err
		}
		senders[push.PlatformAPNs] = a
		closeFn = func() { a.Close() }
	} else {
		plog.Info("push: APNs not configured (push.apns.key_file): iOS tokens are skipped")
	}
	if cfg.PushFCMCreds != "" {
		f, err := push.NewFCM(ctx, push.FCMConfig{CredentialsFile: cfg.PushFCMCreds, ProjectID: cfg.PushFCMProject}, plog)
		if err != nil {
			closeFn()
			return nil, func() {}, err
		}
		senders[push.PlatformFCM] = f
	} else {
		plog.Info("push: FCM not configured (push.fcm.credentials_file): Android tokens are skipped")
	}
	if cfg.PushLog {
		l := push.NewLog(log)
		for _, p := range []push.Platform{push.PlatformAPNs, push.PlatformFCM} {
			if senders[p] == nil {
				senders[p] = l
			}
		}
	}
	return push.NewRouter(senders, plog), closeFn, nil
}
