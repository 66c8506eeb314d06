package camera

// maxPayload is the largest RTP payload sent: rtpMTU less the 12-byte
// fixed RTP header (RFC 3550 §5.1).
const maxPayload = rtpMTU - 12

// packetize cuts one access unit (its NAL units, without start codes) into
// RTP payloads for codec, in one backing array: a NAL unit that fits is a
// single NAL unit packet (RFC 6184 §5.6, RFC 7798 §4.4.1), a larger one is
// split into fragmentation units (H.264 FU-A, RFC 6184 §5.8; H.265 FU, RFC
// 7798 §4.4.3). No aggregation: every receiver of packetization-mode=1
// accepts single NAL units, and parameter sets are small. Working from the
// NAL units avoids building an Annex B stream only to search it for start
// codes again.
func packetize(codec string, nalus [][]byte) [][]byte {
	cd := codecByName(codec)
	hdr := cd.nalHeaderLen + 1 // the FU prefix (NAL header sized) + FU header
	size, count := 0, 0
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		if len(n) <= maxPayload {
			size += len(n)
			count++
			continue
		}
		body := len(n) - (hdr - 1) // the NAL header is not repeated
		frags := (body + maxPayload - hdr - 1) / (maxPayload - hdr)
		size += body + frags*hdr
		count += frags
	}
	buf := make([]byte, 0, size)
	out := make([][]byte, 0, count)
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		if len(n) <= maxPayload {
			start := len(buf)
			buf = append(buf, n...)
			out = append(out, buf[start:len(buf):len(buf)])
			continue
		}
		if len(n) <= cd.nalHeaderLen {
			continue // a bare header cannot be fragmented
		}
		prefix, typ := cd.fuPrefix(n)
		rest := n[cd.nalHeaderLen:]
		for first := true; len(rest) > 0; first = false {
			k := min(len(rest), maxPayload-hdr)
			fu := typ
			if first {
				fu |= 0x80
			}
			if k == len(rest) {
				fu |= 0x40
			}
			start := len(buf)
			buf = append(append(append(buf, prefix[:cd.nalHeaderLen]...), fu), rest[:k]...)
			out = append(out, buf[start:len(buf):len(buf)])
			rest = rest[k:]
		}
	}
	return out
}
