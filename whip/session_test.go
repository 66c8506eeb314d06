package whip

import (
	"testing"
	"time"
)

func TestOpusDuration(t *testing.T) {
	for _, c := range []struct {
		pkt    []byte
		want   time.Duration
		stereo bool
	}{
		{[]byte{0xfc, 1}, 20 * time.Millisecond, true},       // config 31 CELT 20 ms, stereo, code 0
		{[]byte{0xf8, 1}, 20 * time.Millisecond, false},      // config 31 CELT 20 ms, mono
		{[]byte{0x08}, 20 * time.Millisecond, false},         // config 1 SILK 20 ms
		{[]byte{0x01 << 3, 0}, 20 * time.Millisecond, false}, // same, extra byte
		{[]byte{0x00}, 10 * time.Millisecond, false},         // config 0 SILK 10 ms
		{[]byte{0x18}, 60 * time.Millisecond, false},         // config 3 SILK 60 ms
		{[]byte{0xf9}, 40 * time.Millisecond, false},         // CELT 20 ms, code 1: two frames
		{[]byte{0xf3, 0x02}, 20 * time.Millisecond, false},   // config 30 CELT 10 ms, code 3, 2 frames
		{[]byte{0x78}, 20 * time.Millisecond, false},         // config 15 hybrid 20 ms
	} {
		d, stereo, err := opusDuration(c.pkt)
		if err != nil || d != c.want || stereo != c.stereo {
			t.Errorf("TOC %#x: %v stereo %v %v, want %v stereo %v", c.pkt[0], d, stereo, err, c.want, c.stereo)
		}
	}
	if _, _, err := opusDuration([]byte{0xfb}); err == nil {
		t.Error("code 3 without a count byte accepted")
	}
}
