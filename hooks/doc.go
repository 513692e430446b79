// Package hooks holds Parley's mochi-mqtt hooks: Auth (who may connect, and
// which topics each client may use) and Inbox (stamping, storing and
// delivering messages; receipts; per-device cursors and catch-up).
//
// Hooks run on each client's read goroutine: the work they do inline is kept
// short and says so. The one deliberate wait is the database commit in
// OnPublish, which blocks only the publishing client and makes its PUBACK
// mean "stored". Catch-up, receipts and cursor writes run on goroutines of
// their own.
//
// Lock order: Inbox.delivering[inbox].mu before Inbox.regMu (catching-up gates
// by inbox) before session.mu.
package hooks
