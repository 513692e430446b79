package protocol

import "strings"

// Topic prefixes of the three reserved namespaces. Every other topic is plain
// MQTT and open to administrators only.
const (
	UserPrefix     = "u/" // u/{user}: a user's inbox
	GroupPrefix    = "g/" // g/{group}: a group's inbox
	PresencePrefix = "p/" // p/{user}: a user's retained presence
)

// Kind says which namespace a topic belongs to.
type Kind uint8

const (
	KindOther    Kind = iota // not one of Parley's namespaces
	KindUser                 // u/{user}
	KindGroup                // g/{group}
	KindPresence             // p/{user}
)

// Topic is a parsed Parley topic name.
type Topic struct {
	Kind Kind
	ID   string // the user or group id; empty for KindOther
}

// String returns the topic name.
func (t Topic) String() string {
	switch t.Kind {
	case KindUser:
		return UserPrefix + t.ID
	case KindGroup:
		return GroupPrefix + t.ID
	case KindPresence:
		return PresencePrefix + t.ID
	}
	return ""
}

// ParseTopic splits a topic name into its namespace and id. ok is false when
// the name is inside a reserved namespace but malformed (an invalid id, more
// levels, or an MQTT wildcard): such topics exist for nobody.
func ParseTopic(name string) (t Topic, ok bool) {
	var kind Kind
	switch {
	case strings.HasPrefix(name, UserPrefix):
		kind = KindUser
	case strings.HasPrefix(name, GroupPrefix):
		kind = KindGroup
	case strings.HasPrefix(name, PresencePrefix):
		kind = KindPresence
	default:
		return Topic{Kind: KindOther}, true
	}
	id := name[2:]
	if !ValidID(id) {
		return Topic{Kind: kind}, false
	}
	return Topic{Kind: kind, ID: id}, true
}

// IsReserved reports whether a topic name or filter touches one of Parley's
// namespaces, either literally or through a wildcard at the first level.
func IsReserved(filter string) bool {
	if strings.HasPrefix(filter, "$share/") {
		// $share/{group}/{filter} [MQTT-4.8.2-1]
		rest := filter[len("$share/"):]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return false
		}
		filter = rest[i+1:]
	}
	if filter == "#" || filter == "+" || strings.HasPrefix(filter, "+/") {
		return true
	}
	if len(filter) >= 1 && (filter[0] == 'u' || filter[0] == 'g' || filter[0] == 'p') {
		return len(filter) == 1 || filter[1] == '/'
	}
	return false
}

// UserInbox returns the inbox topic of a user.
func UserInbox(user string) string { return UserPrefix + user }

// GroupInbox returns the inbox topic of a group.
func GroupInbox(group string) string { return GroupPrefix + group }

// PresenceTopic returns the presence topic of a user.
func PresenceTopic(user string) string { return PresencePrefix + user }

// MaxIDLen is the longest user or group id.
const MaxIDLen = 64

// ValidID reports whether s is a valid user or group id:
// ^[a-z0-9][a-z0-9_.-]{0,63}$.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ClientIDBelongsTo reports whether an MQTT client id may be used by user:
// it must be the user id itself or start with "{user}/".
func ClientIDBelongsTo(clientID, user string) bool {
	if !strings.HasPrefix(clientID, user) {
		return false
	}
	return len(clientID) == len(user) || clientID[len(user)] == '/'
}
