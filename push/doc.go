// Package push sends one notification to one device token through a push
// provider and reports precisely what became of it.
//
// Providers are Apple's APNs (NewAPNs: token authentication with a .p8 key,
// each token sent to the production or sandbox host of its environment),
// Firebase Cloud Messaging (NewFCM: a service account, the FCM v1 API), and a
// development provider that only logs (NewLog). A Router picks the provider
// by the device's platform.
//
// Every send ends in a Result whose Outcome tells the caller what to do next:
//
//   - Sent: the provider accepted the notification.
//   - InvalidToken: the provider says the token will never work again: delete
//     it (for APNs, unless it was registered again after Result.InvalidSince).
//   - Retryable: try again later, after Backoff(attempt, Result.RetryAfter).
//   - Permanent: this notification cannot be sent; retrying will not help.
//
// A Sender makes one attempt per Send, bounded by a timeout, and keeps no
// state about tokens: deciding who gets a push, queueing, coalescing and
// retrying are the Service's business.
//
// NewNotification builds the Notification for a chat message: title, preview
// truncated on a rune boundary, per-conversation thread, unread badge, and the
// data the app needs to open the conversation; or, for a user who turned
// previews off, a content-free one (Notification.ContentFree) that carries
// ids only, for the app to fetch the message and show it itself.
//
// Service is the outbox's dispatcher: it claims the push jobs the store
// queues with each message, after a grace period, decides who gets a push
// (no device acknowledged the message, the conversation is not muted, the
// user has tokens), coalesces what waits per user and conversation, sends
// through a Sender (a Router), retries Retryable results with Backoff and
// deletes InvalidToken tokens. Several nodes may run one each on one
// database: claims lease jobs, so each job is claimed by one node at a time.
//
// "No device acknowledged the message" is the store's to say, not a node's
// memory: a device may acknowledge on one node while another claims the
// job. Service.Delivered (hooks call it on a device's PUBACK) queues the
// acknowledgement without blocking; a writer records the queue in the store
// in batches every AckFlush (Store.RecordPushAcks, one statement per
// batch, retried with backoff); and the claim of a job returns who
// acknowledged its message (storage.PushJob.Acked), whichever node saw it.
// An acknowledgement cancels the push everywhere when it reaches the store
// before the job is due:
//
//	delivery + device round trip + AckFlush + one write < Grace
//
// (50ms and 3s by default). Until it is written, the node that saw it also
// reads it from its queue, which covers a store that is slow or down.
//
// Package pushtest has fake APNs and FCM servers for tests.
package push
