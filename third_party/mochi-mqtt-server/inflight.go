// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Inflight is a map of InflightMessage keyed on packet id.
type Inflight struct {
	sync.RWMutex
	internal            map[uint16]packets.Packet // internal contains the inflight packets
	receiveQuota        int32                     // remaining inbound qos quota for flow control
	sendQuota           int32                     // remaining outbound qos quota for flow control
	maximumReceiveQuota int32                     // maximum allowed receive quota
	maximumSendQuota    int32                     // maximum allowed send quota
	// Parley patch 10: the order packets entered the map, so that GetAll
	// (resends, and packets held back by the send quota) keeps it; it
	// sorted by whole seconds, with an unstable sort.
	order map[uint16]uint64
	added uint64
	// Parley patch 14: how many packets the send quota holds back (Expiry
	// -1), so that a new packet sees at once whether it must wait behind
	// them.
	held int
}

// NewInflights returns a new instance of an Inflight packets map.
func NewInflights() *Inflight {
	return &Inflight{
		internal: map[uint16]packets.Packet{},
	}
}

// Set adds or updates an inflight packet by packet id.
func (i *Inflight) Set(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[m.PacketID]
	i.internal[m.PacketID] = m
	i.countHeld(old, ok, -1)
	i.countHeld(m, true, 1)
	if !ok {
		if i.order == nil {
			i.order = map[uint16]uint64{}
		}
		i.added++
		i.order[m.PacketID] = i.added
	}
	return !ok
}

// Get returns an inflight packet by packet id.
func (i *Inflight) Get(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	if m, ok := i.internal[id]; ok {
		return m, true
	}

	return packets.Packet{}, false
}

// Len returns the size of the inflight messages map.
func (i *Inflight) Len() int {
	i.RLock()
	defer i.RUnlock()
	return len(i.internal)
}

// Clone returns a new instance of Inflight with the same message data.
// This is used when transferring inflights from a taken-over session.
func (i *Inflight) Clone() *Inflight {
	c := NewInflights()
	i.RLock()
	defer i.RUnlock()
	for k, v := range i.internal {
		c.internal[k] = v
	}
	c.order, c.added, c.held = make(map[uint16]uint64, len(i.order)), i.added, i.held
	for k, v := range i.order {
		c.order[k] = v
	}
	return c
}

// GetAll returns all the inflight messages.
func (i *Inflight) GetAll(immediate bool) []packets.Packet {
	i.RLock()
	defer i.RUnlock()

	m := []packets.Packet{}
	for _, v := range i.internal {
		if !immediate || (immediate && v.Expiry < 0) {
			m = append(m, v)
		}
	}

	sort.Slice(m, func(a, b int) bool {
		return i.order[m[a].PacketID] < i.order[m[b].PacketID]
	})

	return m
}

// NextImmediate returns the next inflight packet which is indicated to be sent immediately.
// This typically occurs when the quota has been exhausted, and we need to wait until new quota
// is free to continue sending.
func (i *Inflight) NextImmediate() (packets.Packet, bool) {
	// Parley patch 4: GetAll takes the read lock; taking it here as well
	// deadlocked against a writer waiting in between.
	m := i.GetAll(true)
	if len(m) > 0 {
		return m[0], true
	}

	return packets.Packet{}, false
}

// Delete removes an in-flight message from the map. Returns true if the message existed.
func (i *Inflight) Delete(id uint16) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[id]
	delete(i.internal, id)
	delete(i.order, id)
	i.countHeld(old, ok, -1)

	return ok
}

// countHeld adds d to the count of held packets if pk (present when ok) is
// held back by the send quota (Parley patch 14). Called under the lock.
func (i *Inflight) countHeld(pk packets.Packet, ok bool, d int) {
	if ok && pk.Expiry < 0 {
		i.held += d
	}
}

// heldLen returns how many packets the send quota holds back (Parley patch
// 14).
func (i *Inflight) heldLen() int {
	i.RLock()
	defer i.RUnlock()
	return i.held
}

// takeHeld returns up to n of the packets held back by the send quota, in
// the order they entered (patch 10), marked as sent (Parley patch 14).
//
// Parley patch 11: a packet released is in flight, awaiting its PUBACK like
// any other, so it stays in the map; deleting it (as before) made that
// PUBACK unknown, so the quota never grew again and the client received
// nothing more, and the packet was not resent after a reconnect.
func (i *Inflight) takeHeld(n int) []packets.Packet {
	i.Lock()
	defer i.Unlock()
	if n <= 0 || i.held == 0 {
		return nil
	}
	m := make([]packets.Packet, 0, i.held)
	for _, v := range i.internal {
		if v.Expiry < 0 {
			m = append(m, v)
		}
	}
	sort.Slice(m, func(a, b int) bool {
		return i.order[m[a].PacketID] < i.order[m[b].PacketID]
	})
	if len(m) > n {
		m = m[:n]
	}
	for k := range m {
		m[k].Expiry = 0
		i.internal[m[k].PacketID] = m[k]
	}
	i.held -= len(m)
	return m
}

// hold holds back again packets takeHeld returned that could not be sent
// (Parley patch 14); they keep their place in line.
func (i *Inflight) hold(pks []packets.Packet) {
	i.Lock()
	defer i.Unlock()
	for _, pk := range pks {
		if v, ok := i.internal[pk.PacketID]; ok && v.Expiry >= 0 {
			v.Expiry = -1
			i.internal[pk.PacketID] = v
			i.held++
		}
	}
}

// TakeRecieveQuota reduces the receive quota by 1.
func (i *Inflight) DecreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) > 0 {
		atomic.AddInt32(&i.receiveQuota, -1)
	}
}

// TakeRecieveQuota increases the receive quota by 1.
func (i *Inflight) IncreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) < atomic.LoadInt32(&i.maximumReceiveQuota) {
		atomic.AddInt32(&i.receiveQuota, 1)
	}
}

// ResetReceiveQuota resets the receive quota to the maximum allowed value.
func (i *Inflight) ResetReceiveQuota(n int32) {
	atomic.StoreInt32(&i.receiveQuota, n)
	atomic.StoreInt32(&i.maximumReceiveQuota, n)
}

// DecreaseSendQuota reduces the send quota by 1.
func (i *Inflight) DecreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) > 0 {
		atomic.AddInt32(&i.sendQuota, -1)
	}
}

// IncreaseSendQuota increases the send quota by 1.
func (i *Inflight) IncreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) < atomic.LoadInt32(&i.maximumSendQuota) {
		atomic.AddInt32(&i.sendQuota, 1)
	}
}

// ResetSendQuota resets the send quota to the maximum allowed value.
func (i *Inflight) ResetSendQuota(n int32) {
	atomic.StoreInt32(&i.sendQuota, n)
	atomic.StoreInt32(&i.maximumSendQuota, n)
}
