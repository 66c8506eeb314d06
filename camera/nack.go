package camera

import (
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// nackHistory is how many sent packets a viewer can retransmit on a
// generic NACK (RFC 4585 §6.2.1); a power of two. 256 packets is over a
// second of 1080p at 2 Mbit/s, several round trips even over 4G.
const nackHistory = 256

// sentPacket is what a retransmission needs of a packet already sent: its
// header fields and its payload, one of the frame's shared, immutable
// payload slices (packetize), so nothing is copied.
type sentPacket struct {
	seq     uint16
	ts      uint32
	marker  bool
	valid   bool
	payload []byte
}

// history is a viewer's ring of sent packets, indexed by sequence number.
// It replaces pion's NACK responder interceptor, which copied every packet
// into its own buffer: 256 × 1.2 kB per viewer, a third of the relay's live
// heap with 20 viewers (issue 16 heap profile).
type history [nackHistory]sentPacket

func (h *history) add(hdr *rtp.Header, payload []byte) {
	h[hdr.SequenceNumber%nackHistory] = sentPacket{
		seq: hdr.SequenceNumber, ts: hdr.Timestamp, marker: hdr.Marker, valid: true, payload: payload,
	}
}

// get returns the packet sent with seq, if it is still held.
func (h *history) get(seq uint16) (sentPacket, bool) {
	p := h[seq%nackHistory]
	return p, p.valid && p.seq == seq
}

// nackedSeqs appends the sequence numbers a generic NACK asks for
// (RFC 4585 §6.2.1: PID and the BLP bitmask of the following 16).
func nackedSeqs(dst []uint16, n *rtcp.TransportLayerNack) []uint16 {
	for _, pair := range n.Nacks {
		dst = append(dst, pair.PacketList()...)
	}
	return dst
}

// retransmit sends again the packets a NACK names that the history still
// holds, with their original sequence numbers and timestamps (no RTX stream
// is negotiated, RFC 4588 §1). Packets already gone are skipped: the
// browser's PLI or the next keyframe repairs those.
func (v *viewer) retransmit(n *rtcp.TransportLayerNack) {
	v.sendMu.Lock()
	defer v.sendMu.Unlock()
	v.nackBuf = nackedSeqs(v.nackBuf[:0], n)
	for _, seq := range v.nackBuf {
		p, ok := v.hist.get(seq)
		if !ok {
			continue
		}
		v.pkt.Header = rtp.Header{Version: 2, Marker: p.marker, SequenceNumber: p.seq, Timestamp: p.ts}
		v.pkt.Payload = p.payload
		if v.track.WriteRTP(&v.pkt) == nil { // a failed resend is repaired like a lost one
			v.r.retransmits.Add(1)
		}
	}
}
