package push

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Notification is what one device is sent: the same for every provider,
// each sender mapping it onto its provider's fields.
type Notification struct {
	// Title is the first line: the sender, and the group for a group message.
	Title string
	// Body is the text under the title.
	Body string
	// ThreadID groups the notifications of one conversation, and a newer one
	// replaces an older one of the same conversation: APNs thread-id and
	// apns-collapse-id, Android notification tag and FCM collapse_key.
	ThreadID string
	// Badge is the number shown on the app icon: the user's total unread
	// count; 0 clears it (APNs badge, Android notification_count).
	Badge int
	// Data is given to the app with the notification, so that it opens the
	// right conversation: see NewNotification for its keys. The key "aps" is
	// reserved by APNs and dropped.
	Data map[string]string
	// Expiry is when the provider should give up delivering to a device that
	// is offline (apns-expiration, Android TTL). The zero value means
	// DefaultTTL after the send. A send after Expiry fails as Permanent with
	// ErrExpired, without reaching the provider.
	Expiry time.Time
	// ContentFree says that the notification carries nothing of the
	// message (see NewNotification): the app fetches the message by the
	// ids of Data and shows it itself. APNs marks it mutable-content, so
	// that the app's Notification Service Extension runs and may replace
	// the generic alert with the message it fetched.
	ContentFree bool
}

// Limits and texts of NewNotification.
const (
	// DefaultTTL is how long a notification waits for an offline device
	// when its Expiry is not set.
	DefaultTTL = 24 * time.Hour
	// MaxTitleRunes and MaxBodyRunes bound the title and the body preview,
	// ellipsis included; longer texts are cut on a character boundary.
	MaxTitleRunes = 100
	MaxBodyRunes  = 200
	// HiddenPreview is the body when previews are off or the message has no
	// text.
	HiddenPreview = "New message"
)

// Keys of Notification.Data set by NewNotification.
const (
	DataInbox = "inbox" // the inbox topic holding the message, e.g. "g/team"
	DataSeq   = "seq"   // its sequence number in that inbox, in decimal
	DataID    = "id"    // the message id
)

// Message is what NewNotification needs to know about a chat message and
// its recipient.
type Message struct {
	// SenderName is the display name of the message's author.
	SenderName string
	// GroupName is the group's display name; "" for a direct message.
	GroupName string
	// Text is the message text; only its start is sent.
	Text string
	// Preview is the recipient's setting: false makes the notification
	// content-free (NewNotification).
	Preview bool
	// Badge is the recipient's total unread count, this message included.
	Badge int
	// Inbox, Seq and ID locate the message: the app opens Inbox and catches
	// up to Seq.
	Inbox string
	Seq   int64
	ID    string
	// Conversation is the thread the notification belongs to: the group's
	// inbox ("g/team"), or for a direct message the other user ("u/alice"),
	// since all of a user's direct messages share one inbox. Default: Inbox.
	Conversation string
	// Time is when the message was sent; its notification expires
	// DefaultTTL later. Zero: DefaultTTL after the send.
	Time time.Time
}

// NewNotification builds the notification of a chat message:
//
//   - Title: "Alice" for a direct message, "Alice @ Team" in a group.
//   - Body: the text, cut to MaxBodyRunes with an ellipsis, or HiddenPreview
//     when there is no text.
//   - ThreadID: the conversation; Badge: the unread count.
//   - Data: {"inbox": Inbox, "seq": Seq, "id": ID}.
//
// With Preview off it is content-free (ContentFree): no text and no name,
// of the sender or of the group, anywhere. The title is empty, the body
// HiddenPreview, and there is no ThreadID, which for a direct message would
// name the sender (threads and collapsing are the app's, once it has the
// message). Data and Badge are as above: ids and a count, for the app to
// fetch the message (GET /v1/messages) and show it.
func NewNotification(m Message) Notification {
	if !m.Preview {
		return contentFree(m)
	}
	title := m.SenderName
	if m.GroupName != "" {
		title = m.SenderName + " @ " + m.GroupName
	}
	body := HiddenPreview
	if t := Truncate(m.Text, MaxBodyRunes); t != "" {
		body = t
	}
	thread := m.Conversation
	if thread == "" {
		thread = m.Inbox
	}
	n := contentFree(m)
	n.ContentFree = false
	n.Title, n.Body, n.ThreadID = Truncate(title, MaxTitleRunes), body, thread
	return n
}

// contentFree returns m's notification without its text or names: what
// ends up at Apple's and Google's when previews are off.
func contentFree(m Message) Notification {
	n := Notification{
		Body:  HiddenPreview,
		Badge: max(m.Badge, 0),
		Data: map[string]string{
			DataInbox: m.Inbox,
			DataSeq:   strconv.FormatInt(m.Seq, 10),
			DataID:    m.ID,
		},
		ContentFree: true,
	}
	if !m.Time.IsZero() {
		n.Expiry = m.Time.Add(DefaultTTL)
	}
	return n
}

// ellipsis ends a truncated text.
const ellipsis = "…"

// Truncate returns s trimmed of surrounding white space and, if it is then
// longer than maxRunes characters, cut to at most maxRunes-1 of them followed
// by an ellipsis. Invalid UTF-8 is replaced by U+FFFD. The cut never falls
// inside a character, nor just before a combining mark or around a
// zero-width joiner, so that an accented letter or an emoji sequence is kept
// whole or dropped whole (as far as such marks go: it does not implement the
// full grapheme rules).
func Truncate(s string, maxRunes int) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
	if maxRunes <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= maxRunes {
		return s
	}
	// Byte offset of the end of the first maxRunes-1 runes.
	cut, n := 0, 0
	for i := range s {
		if n == maxRunes-1 {
			cut = i
			break
		}
		n++
	}
	// Back off while the cut would split a cluster: the next rune extends
	// the previous one, or the previous one is a joiner.
	for cut > 0 {
		next, _ := utf8.DecodeRuneInString(s[cut:])
		prev, size := utf8.DecodeLastRuneInString(s[:cut])
		if !extends(next) && prev != zwj {
			break
		}
		cut -= size
	}
	return strings.TrimRightFunc(s[:cut], unicode.IsSpace) + ellipsis
}

const zwj = '\u200D' // zero-width joiner, glues emoji into one

// extends reports whether r attaches to the character before it.
func extends(r rune) bool {
	return r == zwj || unicode.Is(unicode.M, r) || // combining marks, variation selectors
		(r >= 0x1F3FB && r <= 0x1F3FF) || // emoji skin-tone modifiers
		(r >= 0xE0020 && r <= 0xE007F) // emoji tag sequences (flags of regions)
}
