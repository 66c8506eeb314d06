package camera

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Codec names as reported in Status.
const (
	codecH264 = "H264"
	codecH265 = "H265"
)

// codec is everything the relay knows about one video codec: how to find
// it in a camera's RTSP description and depacketize it, how to read its
// NAL units (parameter sets, keyframes, the SPS), how to pick it from a
// browser's offer, and how to packetize it for WebRTC. Adding a codec is
// adding one entry to codecTable.
type codec struct {
	// name is the Status name ("H264"); label the human spelling ("H.264").
	name, label string
	// mime and clockRate are the WebRTC codec capability (RFC 3551 §5:
	// video RTP clocks run at 90 kHz).
	mime      string
	clockRate uint32
	// ingest finds the codec's format in an RTSP description and returns
	// its media, a depacketizer (which returns nil, nil while an access unit
	// is incomplete) and the parameter sets the SDP carries. A nil media
	// means the camera does not send this codec.
	ingest func(desc *description.Session) (*description.Media, format.Format, func(*rtp.Packet) ([][]byte, error), [][]byte, error)
	// paramKind classifies a NAL unit: 'v' VPS, 's' SPS, 'p' PPS, 'a' AUD,
	// 0 other (learnParamLocked keeps one of each parameter set).
	paramKind func(n []byte) byte
	// isKeyframe reports whether an access unit is a random access point,
	// where a viewer may start (the keyframe-first guarantee).
	isKeyframe func(au [][]byte) bool
	// describe parses an SPS: the profile the offer is matched against,
	// the picture size and the frame rate.
	describe func(sps []byte) (profile string, w, h int, fps float64, ok bool)
	// pick chooses the browser's offered payload type for a stream of this
	// codec with the given profile.
	pick func(offered []offeredCodec, profile string) (offeredCodec, bool)
	// substreamFirst sends a browser that cannot decode this codec to the
	// camera's substream, with substreamHint in the error when there is none.
	substreamFirst bool
	substreamHint  string
	// nalHeaderLen is the NAL unit header's length; fuPrefix returns the
	// bytes that open each fragmentation unit of NAL unit n before the FU
	// header (nalHeaderLen of them) and the FU header's type bits.
	nalHeaderLen int
	fuPrefix     func(n []byte) (prefix [2]byte, typ byte)
}

// codecTable lists the supported codecs, in the order a camera's description
// is searched.
var codecTable = []*codec{
	{
		name: codecH264, label: "H.264", mime: webrtc.MimeTypeH264, clockRate: 90000,
		ingest: func(desc *description.Session) (*description.Media, format.Format, func(*rtp.Packet) ([][]byte, error), [][]byte, error) {
			var f *format.H264
			medi := desc.FindFormat(&f)
			if medi == nil {
				return nil, nil, nil, nil, nil
			}
			if f.PacketizationMode >= 2 {
				return nil, nil, nil, nil, errors.New("camera uses H.264 interleaved packetization (RFC 6184 mode 2), which the relay does not support: set the camera's RTP packetization to non-interleaved")
			}
			dec, err := f.CreateDecoder()
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("create H.264 depacketizer: %w", err)
			}
			sps, pps := f.SafeParams()
			return medi, f, quiet(dec.Decode, rtph264.ErrMorePacketsNeeded, rtph264.ErrNonStartingPacketAndNoPrevious), nonNil(sps, pps), nil
		},
		paramKind: func(n []byte) byte {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				return 's'
			case h264.NALUTypePPS:
				return 'p'
			case h264.NALUTypeAccessUnitDelimiter:
				return 'a'
			}
			return 0
		},
		isKeyframe: h264.IsRandomAccess,
		describe: func(p []byte) (string, int, int, float64, bool) {
			profile := ""
			if len(p) >= 4 {
				profile = hex.EncodeToString(p[1:4]) // profile-level-id, RFC 6184 §8.1
			}
			var sps h264.SPS
			if sps.Unmarshal(p) != nil {
				return profile, 0, 0, 0, false
			}
			return profile, sps.Width(), sps.Height(), sps.FPS(), true
		},
		pick:         pickH264,
		nalHeaderLen: 1,
		fuPrefix: func(n []byte) ([2]byte, byte) {
			// FU-A indicator: F and NRI kept, type 28 (RFC 6184 §5.8).
			return [2]byte{n[0]&0xe0 | 28}, n[0] & 0x1f
		},
	},
	{
		name: codecH265, label: "H.265", mime: webrtc.MimeTypeH265, clockRate: 90000,
		ingest: func(desc *description.Session) (*description.Media, format.Format, func(*rtp.Packet) ([][]byte, error), [][]byte, error) {
			var f *format.H265
			medi := desc.FindFormat(&f)
			if medi == nil {
				return nil, nil, nil, nil, nil
			}
			dec, err := f.CreateDecoder()
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("create H.265 depacketizer: %w", err)
			}
			vps, sps, pps := f.SafeParams()
			return medi, f, quiet(dec.Decode, rtph265.ErrMorePacketsNeeded, rtph265.ErrNonStartingPacketAndNoPrevious), nonNil(vps, sps, pps), nil
		},
		paramKind: func(n []byte) byte {
			switch h265.NALUType((n[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT:
				return 'v'
			case h265.NALUType_SPS_NUT:
				return 's'
			case h265.NALUType_PPS_NUT:
				return 'p'
			case h265.NALUType_AUD_NUT:
				return 'a'
			}
			return 0
		},
		isKeyframe: h265.IsRandomAccess,
		describe: func(p []byte) (string, int, int, float64, bool) {
			var sps h265.SPS
			if sps.Unmarshal(p) != nil {
				return "", 0, 0, 0, false
			}
			return "", sps.Width(), sps.Height(), sps.FPS(), true
		},
		pick:           pickH265,
		substreamFirst: true,
		substreamHint:  "; configure an H.264 substream",
		nalHeaderLen:   2,
		fuPrefix: func(n []byte) ([2]byte, byte) {
			// Payload header with F and the top bit of LayerId kept and
			// Type = 49 (FU), then TID (RFC 7798 §4.4.3).
			return [2]byte{n[0]&0x81 | 49<<1, n[1]}, (n[0] >> 1) & 0x3f
		},
	},
}

// pickH264 chooses the offered H.264 payload type for a camera with the
// given profile-level-id. Only packetization-mode=1 is acceptable (RFC 6184
// §6.3: mode 0 cannot fragment keyframes larger than the MTU). The same
// profile_idc is preferred, then constrained baseline, then any; browsers
// decode by the in-band SPS, the fmtp profile is a capability hint.
func pickH264(offered []offeredCodec, profile string) (offeredCodec, bool) {
	best, bestScore := offeredCodec{}, -1
	camIDC := ""
	if len(profile) >= 2 {
		camIDC = strings.ToLower(profile[:2])
	}
	for _, c := range offered {
		if c.name != "H264" || c.param("packetization-mode") != "1" {
			continue
		}
		plid := strings.ToLower(c.param("profile-level-id"))
		score := 1
		switch {
		case len(plid) >= 2 && plid[:2] == camIDC && len(profile) >= 4 && len(plid) >= 4 && plid[2:4] == strings.ToLower(profile[2:4]):
			score = 4
		case len(plid) >= 2 && plid[:2] == camIDC:
			score = 3
		case strings.HasPrefix(plid, "42e0"):
			score = 2
		}
		if score > bestScore {
			best, bestScore = c, score
		}
	}
	return best, bestScore >= 0
}

// pickH265 chooses the first offered H.265 payload type (browsers name it
// H265; some older ones HEVC).
func pickH265(offered []offeredCodec, _ string) (offeredCodec, bool) {
	for _, c := range offered {
		if c.name == "H265" || c.name == "HEVC" {
			return c, true
		}
	}
	return offeredCodec{}, false
}

// codecByName returns the table entry of a Status codec name, or nil.
func codecByName(name string) *codec {
	for _, c := range codecTable {
		if c.name == name {
			return c
		}
	}
	return nil
}

// codecLabel is the human spelling used in error messages.
func codecLabel(name string) string {
	if c := codecByName(name); c != nil {
		return c.label
	}
	return name
}

// codecLabels lists the supported codecs for an error message:
// "H.264 or H.265".
func codecLabels() string {
	labels := make([]string, len(codecTable))
	for i, c := range codecTable {
		labels[i] = c.label
	}
	return strings.Join(labels, " or ")
}

// quiet wraps a depacketizer so the errors that only mean "more packets
// needed" return nil, nil.
func quiet(decode func(*rtp.Packet) ([][]byte, error), partial ...error) func(*rtp.Packet) ([][]byte, error) {
	return func(p *rtp.Packet) ([][]byte, error) {
		au, err := decode(p)
		for _, e := range partial {
			if errors.Is(err, e) {
				return nil, nil
			}
		}
		return au, err
	}
}
