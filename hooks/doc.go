// Package hooks holds Parley's mochi-mqtt hooks: Auth (who may connect, and
// which topics each client may use), Inbox (stamping, storing and
// delivering messages; receipts; per-device cursors and catch-up) and
// Presence (p/{user}: each user's devices, online/away/offline, last seen,
// privacy). They are added in that order: Presence sees the publishes and
// wills on a user's own presence after Inbox has let them through.
//
// Hooks run on each client's read goroutine: the work they do inline is kept
// short and says so. The one deliberate wait is the database commit in
// OnPublish, which blocks only the publishing client and makes its PUBACK
// mean "stored". Catch-up, receipts and cursor writes run on goroutines of
// their own.
//
// The Inbox hook is thin: its parts (publisher, fanout, acks, members,
// sessionTable, and broker, which holds every direct use of mochi's
// internals) are described in README.md.
//
// Lock order: fanout.delivering[inbox].mu before fanout.regMu (catching-up
// gates by inbox) before session.mu; sessionTable.persistMu (persistent
// sessions by user) before session.mu. userState.mu, Auth.mu and Presence.refusalMu are leaves. Presence's shard locks are held while it
// publishes a state (mochi's fan-out, which asks Auth and Inbox only about
// p/ topics, where they take no lock), and before Presence.seenMu.
package hooks
