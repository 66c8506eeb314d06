package camsim

import (
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/pion/rtp"
)

type received struct {
	sdpParams int
	aus       [][][]byte
}

// play reads n access units from url with a plain gortsplib client.
func play(t *testing.T, url string, n int) received {
	t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	var out received
	aus := make(chan [][]byte, 256)
	var h264f *format.H264
	var h265f *format.H265
	if medi := desc.FindFormat(&h264f); medi != nil {
		out.sdpParams = btoi(h264f.SPS != nil) + btoi(h264f.PPS != nil)
		dec, err := h264f.CreateDecoder()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
			t.Fatal(err)
		}
		c.OnPacketRTP(medi, h264f, func(p *rtp.Packet) {
			au, err := dec.Decode(p)
			if err == nil {
				select {
				case aus <- au:
				default:
				}
			} else if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) {
				t.Errorf("decode: %v", err)
			}
		})
	} else if medi := desc.FindFormat(&h265f); medi != nil {
		out.sdpParams = btoi(h265f.VPS != nil) + btoi(h265f.SPS != nil) + btoi(h265f.PPS != nil)
		dec, err := h265f.CreateDecoder()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
			t.Fatal(err)
		}
		c.OnPacketRTP(medi, h265f, func(p *rtp.Packet) {
			au, err := dec.Decode(p)
			if err == nil {
				select {
				case aus <- au:
				default:
				}
			} else if !errors.Is(err, rtph265.ErrMorePacketsNeeded) && !errors.Is(err, rtph265.ErrNonStartingPacketAndNoPrevious) {
				t.Errorf("decode: %v", err)
			}
		})
	} else {
		t.Fatal("no video format")
	}
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for len(out.aus) < n {
		select {
		case au := <-aus:
			out.aus = append(out.aus, au)
		case <-deadline:
			t.Fatalf("got %d access units, want %d", len(out.aus), n)
		}
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func countParams(codec Codec, aus [][][]byte) (params, random int) {
	for _, au := range aus {
		for _, n := range au {
			ni := classify(codec, n)
			if ni.param {
				params++
			}
			if ni.random {
				random++
			}
		}
	}
	return
}

func TestSimH264InBandParams(t *testing.T) {
	s, err := New(Options{EmbedSendTime: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := play(t, url, 20)
	if r.sdpParams != 2 {
		t.Fatalf("SDP carries %d parameter sets, want 2", r.sdpParams)
	}
	params, random := countParams(H264, r.aus)
	if random == 0 || params < 2*random {
		t.Fatalf("in-band params=%d random=%d: want SPS+PPS before each IDR", params, random)
	}
	sent, err := ParseSendTime(H264, r.aus[0][0])
	if err != nil {
		t.Fatalf("first NALU: %v", err)
	}
	if d := time.Since(sent); d < 0 || d > 5*time.Second {
		t.Fatalf("send time %v is %v ago", sent, d)
	}
}

func TestSimParamsOnlyInSDP(t *testing.T) {
	s, err := New(Options{ParamsOnlyInSDP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := play(t, url, 20)
	params, random := countParams(H264, r.aus)
	if r.sdpParams != 2 || params != 0 || random == 0 {
		t.Fatalf("sdp=%d in-band=%d random=%d, want 2/0/>0", r.sdpParams, params, random)
	}
}

func TestSimH265AndRestart(t *testing.T) {
	s, err := New(Options{Codec: H265})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := play(t, url, 5)
	if r.sdpParams != 3 {
		t.Fatalf("SDP carries %d parameter sets, want VPS+SPS+PPS", r.sdpParams)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	url2, err := s.Start(addr)
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	if url2 != url {
		t.Fatalf("restart url %s != %s", url2, url)
	}
	play(t, url2, 5)
}

func TestParseSendTimeRoundTrip(t *testing.T) {
	for _, c := range []Codec{H264, H265} {
		// Unix nanos with zero bytes exercise emulation prevention.
		want := time.Unix(0, 0x0000_0300_0001_0000)
		got, err := ParseSendTime(c, sendTimeSEI(c, want))
		if err != nil || !got.Equal(want) {
			t.Fatalf("%s: got %v, %v want %v", c, got, err, want)
		}
	}
}
