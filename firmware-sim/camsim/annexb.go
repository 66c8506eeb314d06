package camsim

import (
	"encoding/binary"
	"errors"
	"time"
)

// splitAnnexB splits an ITU-T H.264/H.265 Annex B byte stream into NAL units
// (without start codes). It accepts both 3- and 4-byte start codes.
func splitAnnexB(buf []byte) [][]byte {
	var nalus [][]byte
	start := -1
	i := 0
	for i+2 < len(buf) {
		if buf[i] == 0 && buf[i+1] == 0 && buf[i+2] == 1 {
			if start >= 0 {
				end := i
				// A 4-byte start code leaves one zero at the end of the previous NALU.
				for end > start && buf[end-1] == 0 {
					end--
				}
				if end > start {
					nalus = append(nalus, buf[start:end])
				}
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(buf) {
		nalus = append(nalus, buf[start:])
	}
	return nalus
}

// nalInfo classifies a NAL unit for access-unit grouping.
type nalInfo struct {
	vcl        bool // carries a coded slice
	firstSlice bool // first slice of a picture
	param      bool // VPS, SPS or PPS
	random     bool // IDR (H.264) or IRAP (H.265)
	typ        uint8
}

func classify(codec Codec, nalu []byte) nalInfo {
	if len(nalu) == 0 {
		return nalInfo{}
	}
	if codec == H265 {
		if len(nalu) < 3 {
			return nalInfo{}
		}
		typ := (nalu[0] >> 1) & 0x3f
		ni := nalInfo{typ: typ}
		switch {
		case typ <= 31:
			ni.vcl = true
			// ITU-T H.265 §7.3.6.1: first_slice_segment_in_pic_flag is the first bit after the 2-byte header.
			ni.firstSlice = nalu[2]&0x80 != 0
			ni.random = typ >= 16 && typ <= 21
		case typ >= 32 && typ <= 34:
			ni.param = true
		}
		return ni
	}
	typ := nalu[0] & 0x1f
	ni := nalInfo{typ: typ}
	switch typ {
	case 1, 5:
		ni.vcl = true
		// ITU-T H.264 §7.3.3: first_mb_in_slice is ue(v); value 0 is the single bit "1".
		ni.firstSlice = len(nalu) > 1 && nalu[1]&0x80 != 0
		ni.random = typ == 5
	case 7, 8:
		ni.param = true
	}
	return ni
}

// accessUnit is one coded picture with its non-VCL prefix NAL units.
type accessUnit struct {
	nalus  [][]byte
	random bool
}

// groupAccessUnits groups NAL units into access units, assuming the common
// encoder layout where parameter sets and SEI precede the slices of a picture.
func groupAccessUnits(codec Codec, nalus [][]byte) []accessUnit {
	var aus []accessUnit
	var cur accessUnit
	hasVCL := false
	flush := func() {
		if hasVCL {
			aus = append(aus, cur)
		}
		cur = accessUnit{}
		hasVCL = false
	}
	for _, n := range nalus {
		ni := classify(codec, n)
		suffix := codec == H265 && ni.typ == 40 // suffix SEI belongs to the current picture
		if hasVCL && ((ni.vcl && ni.firstSlice) || (!ni.vcl && !suffix)) {
			flush()
		}
		cur.nalus = append(cur.nalus, n)
		if ni.vcl {
			hasVCL = true
			cur.random = cur.random || ni.random
		}
	}
	flush()
	return aus
}

// sendTimeUUID marks the SEI user_data_unregistered message that carries the
// wall-clock send time (ITU-T H.264 §D.1.7, H.265 §D.2.7).
var sendTimeUUID = [16]byte{0x6c, 0x6f, 0x61, 0x6c, 0x61, 0x6e, 0x67, 0x2d, 0x73, 0x65, 0x6e, 0x64, 0x74, 0x69, 0x6d, 0x65}

// sendTimeSEI builds an SEI NAL unit holding t as Unix nanoseconds.
func sendTimeSEI(codec Codec, t time.Time) []byte {
	payload := make([]byte, 0, 24)
	payload = append(payload, sendTimeUUID[:]...)
	payload = binary.BigEndian.AppendUint64(payload, uint64(t.UnixNano()))
	rbsp := []byte{5, byte(len(payload))} // payloadType 5, payloadSize 24
	rbsp = append(rbsp, payload...)
	rbsp = append(rbsp, 0x80) // rbsp_trailing_bits
	var hdr []byte
	if codec == H265 {
		hdr = []byte{39 << 1, 1} // PREFIX_SEI_NUT, layer 0, tid 1
	} else {
		hdr = []byte{6}
	}
	return append(hdr, addEmulationPrevention(rbsp)...)
}

// ErrNoSendTime is returned by ParseSendTime when the NAL unit is not a camsim send-time SEI.
var ErrNoSendTime = errors.New("not a camsim send-time SEI")

// ParseSendTime extracts the wall-clock send time that a Sim with
// Options.EmbedSendTime put in an SEI NAL unit (no start code). Benchmarks use it
// to measure end-to-end latency through the relay, which forwards SEI untouched.
func ParseSendTime(codec Codec, nalu []byte) (time.Time, error) {
	hdr := 1
	if codec == H265 {
		hdr = 2
		if len(nalu) < 2 || (nalu[0]>>1)&0x3f != 39 {
			return time.Time{}, ErrNoSendTime
		}
	} else if len(nalu) < 1 || nalu[0]&0x1f != 6 {
		return time.Time{}, ErrNoSendTime
	}
	rbsp := removeEmulationPrevention(nalu[hdr:])
	if len(rbsp) < 2+24 || rbsp[0] != 5 || rbsp[1] != 24 {
		return time.Time{}, ErrNoSendTime
	}
	if [16]byte(rbsp[2:18]) != sendTimeUUID {
		return time.Time{}, ErrNoSendTime
	}
	ns := binary.BigEndian.Uint64(rbsp[18:26])
	return time.Unix(0, int64(ns)), nil
}

// addEmulationPrevention inserts emulation_prevention_three_byte (ITU-T H.264 §7.4.1).
func addEmulationPrevention(rbsp []byte) []byte {
	out := make([]byte, 0, len(rbsp)+4)
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

func removeEmulationPrevention(buf []byte) []byte {
	out := make([]byte, 0, len(buf))
	zeros := 0
	for _, b := range buf {
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}
