package camera

import "testing"

// TestCodecTable checks every codec entry is complete and classifies its
// own NAL units: a new codec added without, say, a keyframe test or a
// packetizer fails here rather than in a browser.
func TestCodecTable(t *testing.T) {
	// One IDR/IRAP access unit and one non-key access unit per codec, NAL
	// headers only plus a byte (H.264: RFC 6184 §1.3; H.265: RFC 7798 §1.1.4).
	samples := map[string]struct {
		sps, pps, aud []byte
		key, delta    [][]byte
	}{
		codecH264: {sps: []byte{0x67, 0x42}, pps: []byte{0x68, 0xce}, aud: []byte{0x09, 0xf0},
			key: [][]byte{{0x65, 0x88}}, delta: [][]byte{{0x41, 0x9a}}},
		codecH265: {sps: []byte{0x42, 0x01, 0x01}, pps: []byte{0x44, 0x01, 0xc1}, aud: []byte{0x46, 0x01, 0x50},
			key: [][]byte{{0x26, 0x01, 0xaf}}, delta: [][]byte{{0x02, 0x01, 0xd0}}},
	}
	seen := map[string]bool{}
	for _, c := range codecTable {
		if seen[c.name] || c.label == "" || c.mime == "" || c.clockRate != 90000 || c.ingest == nil || c.paramKind == nil ||
			c.isKeyframe == nil || c.describe == nil || c.pick == nil || c.fuPrefix == nil || c.nalHeaderLen < 1 {
			t.Fatalf("codec %q: incomplete or duplicated entry", c.name)
		}
		seen[c.name] = true
		if codecByName(c.name) != c {
			t.Fatalf("codecByName(%q) misses its entry", c.name)
		}
		s, ok := samples[c.name]
		if !ok {
			t.Fatalf("codec %q has no sample NAL units in this test", c.name)
		}
		if c.paramKind(s.sps) != 's' || c.paramKind(s.pps) != 'p' || c.paramKind(s.aud) != 'a' || c.paramKind(s.key[0]) != 0 {
			t.Errorf("%s: paramKind misclassifies", c.name)
		}
		if !c.isKeyframe(s.key) || c.isKeyframe(s.delta) {
			t.Errorf("%s: isKeyframe(key)=%v isKeyframe(delta)=%v", c.name, c.isKeyframe(s.key), c.isKeyframe(s.delta))
		}
		// A NAL unit larger than one payload is fragmented with the
		// codec's prefix and its type in the FU header.
		big := append(append([]byte(nil), s.key[0]...), make([]byte, 3*maxPayload)...)
		pays := packetize(c.name, [][]byte{big})
		if len(pays) != 4 {
			t.Fatalf("%s: %d fragments of a %d-byte NAL unit", c.name, len(pays), len(big))
		}
		prefix, typ := c.fuPrefix(big)
		for i, p := range pays {
			if len(p) > maxPayload || string(p[:c.nalHeaderLen]) != string(prefix[:c.nalHeaderLen]) || p[c.nalHeaderLen]&0x3f != typ {
				t.Errorf("%s: fragment %d header % x", c.name, i, p[:c.nalHeaderLen+1])
			}
		}
	}
	if got := codecLabels(); got != "H.264 or H.265" {
		t.Errorf("codecLabels() = %q", got)
	}
}
