package camera

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// TestPacketizeRoundTrip cuts access units with packetize and puts them
// back together with independent depacketizers (pion's for RFC 6184,
// gortsplib's for RFC 7798): the NAL units must come back unchanged and every
// payload must fit maxPayload.
func TestPacketizeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nal := func(hdr []byte, n int) []byte {
		b := append([]byte(nil), hdr...)
		for len(b) < n {
			b = append(b, byte(rng.IntN(256)))
		}
		return b
	}
	sizes := []int{5, maxPayload - 1, maxPayload, maxPayload + 1, 2*maxPayload - 3, 2 * maxPayload, 50000}
	t.Run("H264", func(t *testing.T) {
		var nalus [][]byte
		nalus = append(nalus, nal([]byte{0x67}, 20), nal([]byte{0x68}, 6)) // SPS, PPS
		for _, n := range sizes {
			nalus = append(nalus, nal([]byte{0x65}, n)) // IDR slices
		}
		pays := packetize(codecH264, nalus)
		var got [][]byte
		var dep codecs.H264Packet
		dep.IsAVC = false
		var annexB []byte
		for _, p := range pays {
			if len(p) > maxPayload {
				t.Fatalf("payload of %d bytes > %d", len(p), maxPayload)
			}
			out, err := dep.Unmarshal(p)
			if err != nil {
				t.Fatal(err)
			}
			annexB = append(annexB, out...)
		}
		for _, n := range bytes.Split(annexB, []byte{0, 0, 0, 1}) {
			if len(n) > 0 {
				got = append(got, n)
			}
		}
		if len(got) != len(nalus) {
			t.Fatalf("%d NAL units back, want %d", len(got), len(nalus))
		}
		for i := range nalus {
			if !bytes.Equal(got[i], nalus[i]) {
				t.Fatalf("NAL unit %d (%d bytes) differs after the round trip", i, len(nalus[i]))
			}
		}
	})
	t.Run("H265", func(t *testing.T) {
		var nalus [][]byte
		nalus = append(nalus, nal([]byte{0x40, 0x01}, 24), nal([]byte{0x42, 0x01}, 40), nal([]byte{0x44, 0x01}, 8)) // VPS, SPS, PPS
		for _, n := range sizes {
			nalus = append(nalus, nal([]byte{0x26, 0x01}, n)) // IDR_W_RADL
		}
		pays := packetize(codecH265, nalus)
		dec := &rtph265.Decoder{}
		if err := dec.Init(); err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		for k, p := range pays {
			if len(p) > maxPayload {
				t.Fatalf("payload of %d bytes > %d", len(p), maxPayload)
			}
			au, err := dec.Decode(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: k == len(pays)-1, SequenceNumber: uint16(k), Timestamp: 90000}, Payload: p})
			if err == nil {
				got = au
			} else if !errors.Is(err, rtph265.ErrMorePacketsNeeded) {
				t.Fatalf("packet %d: %v", k, err)
			}
		}
		if len(got) != len(nalus) {
			t.Fatalf("%d NAL units back, want %d", len(got), len(nalus))
		}
		for i := range nalus {
			if !bytes.Equal(got[i], nalus[i]) {
				t.Fatalf("NAL unit %d (%d bytes) differs after the round trip", i, len(nalus[i]))
			}
		}
	})
}
