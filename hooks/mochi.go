package hooks

import (
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
)

// broker is every direct use the hooks make of mochi's internals: its
// client registry, topic index and retained messages, a client's
// subscription and inflight stores, and writing a packet to a connection
// outside mochi's fan-out. The hooks reach mochi through it alone (besides
// the hook interface and a client's public fields), so that an upgrade of
// mochi audits this file, and the quirks it works around are written down
// in one place (README.md, "mochi quirks").
//
// Its methods do no I/O of their own except write and disconnect, and take
// no lock of Parley's.
type broker struct {
	srv *mqtt.Server
}

// publish hands a message to mochi's fan-out, as the server's inline client.
func (b broker) publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

// client returns the client mochi holds under id (connected or not).
func (b broker) client(id string) (*mqtt.Client, bool) { return b.srv.Clients.Get(id) }

// clients returns every client mochi holds.
func (b broker) clients() map[string]*mqtt.Client { return b.srv.Clients.GetAll() }

// subscription returns cl's subscription to filter.
func (b broker) subscription(cl *mqtt.Client, filter string) (packets.Subscription, bool) {
	return cl.State.Subscriptions.Get(filter)
}

// subscriptions returns every subscription of cl, by filter.
func (b broker) subscriptions(cl *mqtt.Client) map[string]packets.Subscription {
	return cl.State.Subscriptions.GetAll()
}

// unsubscribe removes cl's subscription to filter, from the topic index
// and from the client, as if it had unsubscribed (no hook is told). It
// reports whether there was one.
func (b broker) unsubscribe(cl *mqtt.Client, filter string) bool {
	if _, ok := cl.State.Subscriptions.Get(filter); !ok {
		return false
	}
	b.srv.Topics.Unsubscribe(filter, cl.ID)
	cl.State.Subscriptions.Delete(filter)
	return true
}

// subscribers returns the client ids subscribed to topic, with their
// subscriptions.
func (b broker) subscribers(topic string) map[string]packets.Subscription {
	return b.srv.Topics.Subscribers(topic).Subscriptions
}

// expireSession removes client id's session as mochi's own expiry would
// (its subscriptions, its inflight messages, the client itself), if mochi
// still holds cl under id. mochi offers no compare-and-delete: the window
// between the check and the removal is a few instructions wide.
func (b broker) expireSession(id string, cl *mqtt.Client) bool {
	if cur, ok := b.srv.Clients.Get(id); !ok || cur != cl {
		return false
	}
	b.srv.UnsubscribeClient(cl)
	cl.ClearInflights()
	b.srv.Clients.Delete(id)
	return true
}

// disconnect ends cl's connection with code: an MQTT 5 client is sent a
// DISCONNECT carrying it first; an MQTT 3.1.1 client, which has no server
// DISCONNECT, is closed.
func (b broker) disconnect(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = b.srv.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

// inflightLen is the number of cl's unacknowledged QoS deliveries, both
// directions counted (mochi keeps one store for both).
func (b broker) inflightLen(cl *mqtt.Client) int { return cl.State.Inflight.Len() }

// dropInboxInflights removes unacknowledged inbox deliveries from cl's
// inflight store: catch-up resends them from the store, in order, where
// mochi would resend them from memory, unordered.
func (b broker) dropInboxInflights(cl *mqtt.Client) {
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish && isInboxTopic(pk.TopicName) {
			cl.State.Inflight.Delete(pk.PacketID)
		}
	}
}

// freePacketID picks a free packet id for a delivery written outside
// mochi's fan-out, from the upper half of the id space, after *next. mochi
// numbers its own deliveries from 1 up, and it refuses a client's
// SUBSCRIBE whose packet id is in use by an unacknowledged delivery (0x91);
// clients number their SUBSCRIBEs from 1 up too, and subscribe right after
// reconnecting, which is when catch-up sends.
func (b broker) freePacketID(cl *mqtt.Client, next *uint16) (uint16, bool) {
	for range 1 << 15 {
		*next++
		if *next < 1<<15 {
			*next = 1 << 15
		}
		if _, used := cl.State.Inflight.Get(*next); !used {
			return *next, true
		}
	}
	return 0, false
}

// track records out, a QoS delivery written outside mochi's fan-out, in
// cl's inflight store, as mochi's fan-out would: it counts for the
// client's windows, and mochi resends it on a resumed session.
func (b broker) track(cl *mqtt.Client, out packets.Packet) {
	if cl.State.Inflight.Set(out) {
		atomic.AddInt64(&b.srv.Info.Inflight, 1)
	}
}

// write writes pk to cl's connection at once, outside mochi's fan-out and
// its outbound queue.
func (b broker) write(cl *mqtt.Client, pk packets.Packet) error { return cl.WritePacket(pk) }

// outboundAt returns the delivery to cl that holds packet id pid, if any:
// mochi's inflight store keys both directions by packet id alone, so a
// client's publish with that id overwrites it (OnPacketRead).
func (b broker) outboundAt(cl *mqtt.Client, pid uint16) (packets.Packet, bool) {
	out, ok := cl.State.Inflight.Get(pid)
	return out, ok && out.FixedHeader.Type == packets.Publish
}

// restore puts back a delivery outboundAt returned, unless its packet id
// was taken again meanwhile.
func (b broker) restore(cl *mqtt.Client, out packets.Packet) {
	if _, taken := cl.State.Inflight.Get(out.PacketID); taken {
		return
	}
	b.track(cl, out)
}

// retained returns the retained message of topic.
func (b broker) retained(topic string) (packets.Packet, bool) {
	return b.srv.Topics.Retained.Get(topic)
}

// retainedTopics returns every retained message, by topic.
func (b broker) retainedTopics() map[string]packets.Packet { return b.srv.Topics.Retained.GetAll() }

// retain stores pk as its topic's retained message without publishing it
// (an empty payload clears it).
func (b broker) retain(pk packets.Packet) { b.srv.Topics.RetainMessage(pk) }

func isInboxTopic(topic string) bool {
	return strings.HasPrefix(topic, protocol.UserPrefix) || strings.HasPrefix(topic, protocol.GroupPrefix)
}
