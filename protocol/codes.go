package protocol

// Code is an MQTT 5 reason code Parley answers a publish with. MQTT 5 clients
// receive it in the PUBACK; MQTT 3.1.1 clients, whose PUBACK has no reason code,
// receive an error entry (Type "error") carrying it in their own inbox.
type Code byte

// The reason codes of a refused publish [MQTT-3.4.2.1].
const (
	CodeSuccess       Code = 0x00
	CodeUnavailable   Code = 0x80 // unspecified error: the store is unavailable; retry later
	CodeNotAuthorized Code = 0x87 // the sender may not publish to this topic
	CodeNoInbox       Code = 0x90 // topic name invalid: the inbox does not exist
	CodeTooLarge      Code = 0x95 // packet too large: the payload exceeds the limit
	CodeRateLimited   Code = 0x97 // quota exceeded: the sender is rate limited
	CodeBadPayload    Code = 0x99 // payload format invalid: JSON of the wrong shape
)

// Reason returns the short text that accompanies the code.
func (c Code) Reason() string {
	switch c {
	case CodeSuccess:
		return "success"
	case CodeUnavailable:
		return "store unavailable"
	case CodeNotAuthorized:
		return "not authorized"
	case CodeNoInbox:
		return "inbox does not exist"
	case CodeTooLarge:
		return "payload too large"
	case CodeRateLimited:
		return "rate limited"
	case CodeBadPayload:
		return "payload format invalid"
	}
	return "unspecified error"
}

// Error is a refused publish: a reason code and a detail for people.
type Error struct {
	Code   Code
	Detail string // optional; more specific than Code.Reason()
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return e.Code.Reason() + ": " + e.Detail
	}
	return e.Code.Reason()
}

// newError returns an *Error with the given code and detail.
func newError(code Code, detail string) *Error { return &Error{Code: code, Detail: detail} }
