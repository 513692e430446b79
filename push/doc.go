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
// Deciding who gets a push, queueing, coalescing and retrying are the caller's
// business (the outbox): this package does one attempt per Send, bounded by a
// timeout, and keeps no state about tokens.
//
// NewNotification builds the Notification for a chat message: title, preview
// truncated on a rune boundary, per-conversation thread, unread badge, and the
// data the app needs to open the conversation.
//
// Package pushtest has fake APNs and FCM servers for tests.
package push
