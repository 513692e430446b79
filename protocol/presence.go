package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Presence statuses. Clients set StatusOnline and StatusAway on their own
// presence topic; the server sets StatusOffline when a user's last device
// goes; the HTTP API answers StatusHidden for users the caller may not see.
const (
	StatusOnline  = "online"
	StatusAway    = "away"
	StatusOffline = "offline"
	StatusHidden  = "hidden"
)

// Presence is a user's presence: the retained payload the server publishes
// on p/{user}, and one item of GET /v1/presence.
//
//	{"user":"alice","status":"online","ts":1795797858765}
//	{"user":"alice","status":"offline","last_seen":1795797999000}
type Presence struct {
	User   string `json:"user"`
	Status string `json:"status"`
	// TS is when the status began (online, away), Unix milliseconds.
	TS int64 `json:"ts,omitempty"`
	// LastSeen is when the user was last connected (offline), Unix
	// milliseconds; absent when the user has never been seen.
	LastSeen int64 `json:"last_seen,omitempty"`
}

// AppendJSON appends p as JSON, its fields in the documented order.
func (p Presence) AppendJSON(b []byte) []byte {
	b = append(b, `{"user":`...)
	b = appendString(b, p.User)
	b = append(b, `,"status":`...)
	b = appendString(b, p.Status)
	if p.TS != 0 {
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, p.TS, 10)
	}
	if p.LastSeen != 0 {
		b = append(b, `,"last_seen":`...)
		b = strconv.AppendInt(b, p.LastSeen, 10)
	}
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler.
func (p Presence) MarshalJSON() ([]byte, error) { return p.AppendJSON(nil), nil }

// ParsePresenceUpdate reads what a client publishes to its own presence
// topic: a JSON object whose "status" is "online" or "away" (other fields
// are ignored; the server publishes its own payload). Anything else is an
// *Error with CodeBadPayload.
func ParsePresenceUpdate(payload []byte) (status string, err error) {
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return "", newError(CodeBadPayload, `presence must be {"status":"online"} or {"status":"away"}`)
	}
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and the key is "status", exactly.
	var v map[string]json.RawMessage
	if err := json.Unmarshal(payload, &v); err != nil {
		return "", newError(CodeBadPayload, "presence is not a JSON object: "+err.Error())
	}
	raw, ok := v["status"]
	if !ok {
		return "", newError(CodeBadPayload, `presence needs "status"`)
	}
	if json.Unmarshal(raw, &status) == nil && (status == StatusOnline || status == StatusAway) {
		return status, nil
	}
	return "", newError(CodeBadPayload, `presence "status" must be "online" or "away"`)
}
