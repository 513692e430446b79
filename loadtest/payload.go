package loadtest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

// newRunID returns a short random id that tags one run's topics, client ids
// and payloads, so runs never mistake each other's messages for their own.
func newRunID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// runTag is the 32-bit form of a run id carried in raw payloads.
func runTag(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()
}

// The raw payload: a binary header, then filler up to the configured size.
//
//	[0:4]   "PLT1"
//	[4:8]   run tag, big endian
//	[8:12]  publisher index
//	[12:20] publisher sequence number, from 0
//	[20:28] scheduled send time, Unix nanoseconds
const (
	rawMagic     = "PLT1"
	rawHeaderLen = 28
)

type rawHeader struct {
	run       uint32
	publisher uint32
	seq       int64
	due       time.Time
}

func appendRaw(b []byte, h rawHeader, size int) []byte {
	b = append(b, rawMagic...)
	b = binary.BigEndian.AppendUint32(b, h.run)
	b = binary.BigEndian.AppendUint32(b, h.publisher)
	b = binary.BigEndian.AppendUint64(b, uint64(h.seq))
	b = binary.BigEndian.AppendUint64(b, uint64(h.due.UnixNano()))
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

func parseRaw(p []byte) (rawHeader, bool) {
	if len(p) < rawHeaderLen || string(p[:4]) != rawMagic {
		return rawHeader{}, false
	}
	return rawHeader{
		run:       binary.BigEndian.Uint32(p[4:8]),
		publisher: binary.BigEndian.Uint32(p[8:12]),
		seq:       int64(binary.BigEndian.Uint64(p[12:20])),
		due:       time.Unix(0, int64(binary.BigEndian.Uint64(p[20:28]))),
	}, true
}

// Parley messages carry their identity in the cid, "{run}.{sender}.{seq}",
// and their scheduled send time in the body, which the server passes through:
//
//	{"cid":"k3j9x2.17.1234","body":{"t":1764250000123456789,"text":"xxxx…"}}
//
// padded with text up to the configured size.
const minParleySize = 90

func parleyCid(run string, sender int, seq int64) string {
	return run + "." + strconv.Itoa(sender) + "." + strconv.FormatInt(seq, 10)
}

// parseCid splits a cid made by parleyCid. ok is false for any other cid,
// including one from another run.
func parseCid(cid, run string) (sender int, seq int64, ok bool) {
	rest, found := strings.CutPrefix(cid, run+".")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, ".")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.Atoi(a)
	q, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || s < 0 || q < 0 {
		return 0, 0, false
	}
	return s, q, true
}

func appendParleyPayload(b []byte, cid string, due time.Time, size int) []byte {
	b = append(b, `{"cid":"`...)
	b = append(b, cid...)
	b = append(b, `","body":{"t":`...)
	b = strconv.AppendInt(b, due.UnixNano(), 10)
	b = append(b, `,"text":"`...)
	for len(b)+len(`"}}`) < size {
		b = append(b, 'x')
	}
	return append(b, `"}}`...)
}

// entryFields are the members of a delivered entry the load tester reads
// beyond protocol.PeekHeader's header.
type entryFields struct {
	Cid  string `json:"cid"`
	Body struct {
		T int64 `json:"t"`
	} `json:"body"`
	Status string   `json:"status"` // receipt
	IDs    []string `json:"ids"`    // receipt
	For    string   `json:"for"`    // receipt: the inbox the messages were delivered in
	Count  int      `json:"count"`  // group receipt: how many of the other members have the messages
	Of     int      `json:"of"`     // group receipt: of how many
	Code   int      `json:"code"`   // error
	Reason string   `json:"reason"` // error
}

func parseEntryFields(p []byte) (entryFields, error) {
	var f entryFields
	if err := json.Unmarshal(p, &f); err != nil {
		return f, fmt.Errorf("decode entry: %w", err)
	}
	return f, nil
}
