package account

import "sync"

// SeqTracker checks one receiver's view of server-sequenced streams, such as
// Parley inboxes, whose entries carry a gapless sequence number per inbox.
// Because the first entry a run sees may not be the inbox's first, counting
// starts at the lowest sequence number seen. Safe for concurrent use.
type SeqTracker struct {
	mu      sync.Mutex // guards the fields below
	streams map[string]*seqStream
}

type seqStream struct {
	seen      bitset // relative to base
	base      int64
	maxSeq    int64
	dups      int64
	reordered int64
}

// NewSeqTracker returns an empty tracker.
func NewSeqTracker() *SeqTracker { return &SeqTracker{streams: make(map[string]*seqStream)} }

// Add records entry seq of the named stream.
func (t *SeqTracker) Add(name string, seq int64) Arrival {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[name]
	if s == nil {
		s = &seqStream{base: seq, maxSeq: seq}
		s.seen.set(0)
		t.streams[name] = s
		return ArrivalNew
	}
	if seq < s.base {
		// An older entry than the first one seen: rebase.
		shift := s.base - seq
		var moved bitset
		s.seen.each(func(i int64) { moved.set(i + shift) })
		s.seen = moved
		s.base = seq
	}
	if s.seen.set(seq - s.base) {
		s.dups++
		return ArrivalDuplicate
	}
	if seq < s.maxSeq {
		s.reordered++
		return ArrivalReordered
	}
	s.maxSeq = seq
	return ArrivalNew
}

// SeqResult sums a tracker's streams.
type SeqResult struct {
	Streams   int   `json:"streams"`
	Entries   int64 `json:"entries"`    // distinct entries seen
	Gaps      int64 `json:"gaps"`       // sequence numbers missing between the lowest and highest seen
	Dups      int64 `json:"duplicates"` // entries seen more than once
	Reordered int64 `json:"reordered"`  // entries that arrived after a higher sequence number
}

// Add sums two results.
func (r SeqResult) Add(o SeqResult) SeqResult {
	return SeqResult{
		Streams: r.Streams + o.Streams, Entries: r.Entries + o.Entries, Gaps: r.Gaps + o.Gaps,
		Dups: r.Dups + o.Dups, Reordered: r.Reordered + o.Reordered,
	}
}

// Result returns the tracker's counts so far.
func (t *SeqTracker) Result() SeqResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r SeqResult
	for _, s := range t.streams {
		n := s.seen.count()
		r.Streams++
		r.Entries += n
		r.Gaps += s.maxSeq - s.base + 1 - n
		r.Dups += s.dups
		r.Reordered += s.reordered
	}
	return r
}
