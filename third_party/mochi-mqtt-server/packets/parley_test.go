package packets

import (
	"errors"
	"testing"
)

// Parley patch 1: an MQTT 5 SUBSCRIBE whose last filter has no options
// byte (82 06 00 01 00 00 01 61) panicked with an index out of range.
func TestSubscribeDecodeMissingOptions(t *testing.T) {
	pk := &Packet{ProtocolVersion: 5, FixedHeader: FixedHeader{Type: Subscribe, Qos: 1}}
	err := pk.SubscribeDecode([]byte{0x00, 0x01, 0x00, 0x00, 0x01, 0x61})
	if !errors.Is(err, ErrMalformedQos) {
		t.Fatalf("err = %v, want %v", err, ErrMalformedQos)
	}
}

// decodeAll runs the decoder of packet type typ on buf, as a server's read
// loop would after the fixed header.
func decodeAll(typ byte, version byte, buf []byte) error {
	pk := &Packet{ProtocolVersion: version, FixedHeader: FixedHeader{Type: typ, Qos: 1, Remaining: len(buf)}}
	switch typ {
	case Connect:
		return pk.ConnectDecode(buf)
	case Connack:
		return pk.ConnackDecode(buf)
	case Publish:
		return pk.PublishDecode(buf)
	case Puback:
		return pk.PubackDecode(buf)
	case Pubrec:
		return pk.PubrecDecode(buf)
	case Pubrel:
		return pk.PubrelDecode(buf)
	case Pubcomp:
		return pk.PubcompDecode(buf)
	case Subscribe:
		return pk.SubscribeDecode(buf)
	case Suback:
		return pk.SubackDecode(buf)
	case Unsubscribe:
		return pk.UnsubscribeDecode(buf)
	case Unsuback:
		return pk.UnsubackDecode(buf)
	case Disconnect:
		return pk.DisconnectDecode(buf)
	case Auth:
		return pk.AuthDecode(buf)
	}
	return nil
}

// FuzzDecode feeds every decoder arbitrary bodies for each protocol
// version: a decoder may refuse, never panic. Seeds are the table's
// well-formed and malformed packets.
func FuzzDecode(f *testing.F) {
	for typ, cases := range TPacketData {
		for _, c := range cases {
			if len(c.RawBytes) > 2 {
				f.Add(typ, byte(5), c.RawBytes[2:])
				f.Add(typ, byte(4), c.RawBytes[2:])
			}
		}
	}
	f.Add(byte(Subscribe), byte(5), []byte{0x00, 0x01, 0x00, 0x00, 0x01, 0x61})
	f.Fuzz(func(t *testing.T, typ, version byte, buf []byte) {
		typ = typ%15 + 1
		version = version%3 + 3
		_ = decodeAll(typ, version, buf)
	})
}

func TestDecodeTruncatedNeverPanics(t *testing.T) {
	// Every prefix of every table packet, in every version.
	for typ, cases := range TPacketData {
		for _, c := range cases {
			if len(c.RawBytes) <= 2 {
				continue
			}
			body := c.RawBytes[2:]
			for n := 0; n <= len(body); n++ {
				for _, v := range []byte{3, 4, 5} {
					func() {
						defer func() {
							if r := recover(); r != nil {
								t.Fatalf("type %d v%d %q prefix %d: panic %v", typ, v, c.Desc, n, r)
							}
						}()
						_ = decodeAll(typ, v, body[:n])
					}()
				}
			}
		}
	}
}

// Parley patch 8: SUBSCRIBE options with reserved bits are malformed,
// Retain Handling 3 and Subscription Identifier 0 are protocol errors.
func TestSubscribeOptionsChecked(t *testing.T) {
	for name, c := range map[string]struct {
		body []byte
		want Code
	}{
		"reserved bits":     {[]byte{0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0xc1}, ErrMalformedPacket},
		"retain handling 3": {[]byte{0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x31}, ErrProtocolViolation},
	} {
		pk := &Packet{ProtocolVersion: 5, FixedHeader: FixedHeader{Type: Subscribe, Qos: 1}}
		if err := pk.SubscribeDecode(c.body); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
	pk := &Packet{ProtocolVersion: 5, FixedHeader: FixedHeader{Type: Subscribe, Qos: 1}}
	// Properties: Subscription Identifier (0x0b) = 0.
	if err := pk.SubscribeDecode([]byte{0x00, 0x01, 0x02, 0x0b, 0x00, 0x00, 0x01, 'a', 0x01}); err != nil {
		t.Fatal(err)
	}
	if code := pk.SubscribeValidate(); code != ErrProtocolViolation {
		t.Fatalf("subscription identifier 0: %v, want %v", code, ErrProtocolViolation)
	}
}
