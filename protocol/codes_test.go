package protocol_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/parleychat/parley/protocol"
)

// TestCodes pins the reason codes to the MQTT 5 values clients see in their
// PUBACK [MQTT-3.4.2.1], and each to its own reason text.
func TestCodes(t *testing.T) {
	tests := map[string]struct {
		code   protocol.Code
		value  byte
		reason string
	}{
		"success":        {protocol.CodeSuccess, 0x00, "success"},
		"unavailable":    {protocol.CodeUnavailable, 0x80, "store unavailable"},
		"not authorized": {protocol.CodeNotAuthorized, 0x87, "not authorized"},
		"no inbox":       {protocol.CodeNoInbox, 0x90, "inbox does not exist"},
		"too large":      {protocol.CodeTooLarge, 0x95, "payload too large"},
		"rate limited":   {protocol.CodeRateLimited, 0x97, "rate limited"},
		"bad payload":    {protocol.CodeBadPayload, 0x99, "payload format invalid"},
		"unknown code":   {protocol.Code(0x83), 0x83, "unspecified error"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if byte(tc.code) != tc.value {
				t.Errorf("code = %#x, want %#x", byte(tc.code), tc.value)
			}
			if got := tc.code.Reason(); got != tc.reason {
				t.Errorf("Reason() = %q, want %q", got, tc.reason)
			}
		})
	}
}

func TestError(t *testing.T) {
	tests := map[string]struct {
		err  *protocol.Error
		want string
	}{
		"code only":       {&protocol.Error{Code: protocol.CodeRateLimited}, "rate limited"},
		"code and detail": {&protocol.Error{Code: protocol.CodeBadPayload, Detail: "unknown type"}, "payload format invalid: unknown type"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
			var pe *protocol.Error
			if wrapped := fmt.Errorf("publish: %w", tc.err); !errors.As(wrapped, &pe) || pe.Code != tc.err.Code {
				t.Errorf("errors.As on a wrapped *Error = %v, want code %#x", pe, byte(tc.err.Code))
			}
		})
	}
}
