package account

import "sync"

// Status is what became of one sent message, as far as its sender knows.
type Status uint8

const (
	// StatusNone: never sent (shed, or the run stopped first). Nothing expected.
	StatusNone Status = iota
	// StatusWritten: handed to the connection, no acknowledgement yet. If the
	// run ends like this the message is in doubt: it may or may not arrive.
	StatusWritten
	// StatusAccepted: a QoS 0 message written, or a QoS 1 message whose PUBACK
	// reported success. Every receiver that should get it must get it.
	StatusAccepted
	// StatusRefused: the PUBACK carried an error reason code. Nothing expected.
	StatusRefused
	// StatusFailed: the write failed or the connection was lost before the
	// PUBACK. In doubt, like StatusWritten.
	StatusFailed
)

// SendLog is one sender's record of its messages: their status and
// destination, indexed by the sender's sequence number. Safe for concurrent use.
type SendLog struct {
	mu     sync.Mutex // guards the fields below
	status []Status
	dest   []int32
}

// NewSendLog returns an empty log with room for n messages.
func NewSendLog(n int) *SendLog {
	return &SendLog{status: make([]Status, 0, n), dest: make([]int32, 0, n)}
}

// Sending records that message seq to dest is about to be written. It must be
// called before the write, since the message can arrive before the write
// returns.
func (l *SendLog) Sending(seq int64, dest int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for int64(len(l.status)) <= seq {
		l.status = append(l.status, StatusNone)
		l.dest = append(l.dest, 0)
	}
	l.status[seq] = StatusWritten
	l.dest[seq] = dest
}

// Set records the fate of message seq. A message already accepted or refused
// keeps that status: a late "connection lost" does not undo a PUBACK.
func (l *SendLog) Set(seq int64, s Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < 0 || seq >= int64(len(l.status)) {
		return
	}
	if cur := l.status[seq]; cur == StatusAccepted || cur == StatusRefused {
		return
	}
	l.status[seq] = s
}

// Get returns the status and destination of message seq.
func (l *SendLog) Get(seq int64) (Status, int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < 0 || seq >= int64(len(l.status)) {
		return StatusNone, 0
	}
	return l.status[seq], l.dest[seq]
}

// Len returns one past the highest sequence number recorded.
func (l *SendLog) Len() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.status))
}

// Counts returns how many messages are in each status.
func (l *SendLog) Counts() (c [StatusFailed + 1]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.status {
		c[s]++
	}
	return c
}

// snapshot copies the log for Reconcile.
func (l *SendLog) snapshot() ([]Status, []int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Status(nil), l.status...), append([]int32(nil), l.dest...)
}
