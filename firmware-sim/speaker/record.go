package speaker

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// SampleRate is the output rate of the simulated speaker: Opus decodes to
// 48 kHz (RFC 6716 §2), mono.
const SampleRate = 48000

// packetSamples is one 20 ms packet at SampleRate.
const packetSamples = SampleRate * 20 / 1000

// wavHeaderLen is the size of a canonical RIFF/WAVE header with a 16-byte
// fmt chunk and the data chunk header.
const wavHeaderLen = 44

// Sidecar is the JSON written next to a recording as <id>-<stream>.json. It
// ties the recorded samples to host wall-clock time so that tests and the
// demo can measure how far apart two speakers really played.
type Sidecar struct {
	Speaker  string `json:"speaker"`
	StreamID uint32 `json:"stream_id"`
	// FirstSampleUnixNS is the host wall-clock time at which the first
	// recorded sample was played, computed from the speaker clock through the
	// true simulated offset and drift, so that clock-sync errors show up here.
	FirstSampleUnixNS int64  `json:"first_sample_unix_ns"`
	FirstSeq          uint32 `json:"first_seq"`
	SampleRate        int    `json:"sample_rate"`
	Samples           int64  `json:"samples"`
	Expected          uint32 `json:"expected"`
	Played            uint32 `json:"played"`
	Late              uint32 `json:"late"`
	Lost              uint32 `json:"lost"`
	Malformed         uint32 `json:"malformed,omitempty"`
	ClockErrorUS      int64  `json:"clock_error_us"`
	// Marks are the host wall-clock play times of slot FirstSeq and of every
	// MarkEvery-th slot after it, computed like FirstSampleUnixNS. The
	// recording holds slots back to back, but the speaker derives each
	// slot's play time from its clock estimate afresh, so over a long
	// stream the marks show drift and clock-estimate changes that the
	// first sample alone cannot (bench/sync -points).
	Marks []SlotMark `json:"marks,omitempty"`
}

// MarkEvery is the slot interval of Sidecar.Marks: one mark per second.
const MarkEvery = 50

// SlotMark is the host time at which a slot's first sample played.
type SlotMark struct {
	Seq    uint32 `json:"seq"`
	HostNS int64  `json:"host_ns"`
}

// recorder streams 16-bit PCM into a temporary WAV file and publishes it
// under its final name only when complete (write, fsync, rename), so a reader
// never sees half a file.
type recorder struct {
	dir, base string
	f         *os.File
	w         *bufio.Writer
	samples   int64
	err       error
}

func newRecorder(dir, base string) (*recorder, error) {
	f, err := os.CreateTemp(dir, "."+base+".*.wav.tmp")
	if err != nil {
		return nil, fmt.Errorf("create recording %s: %w", base, err)
	}
	r := &recorder{dir: dir, base: base, f: f, w: bufio.NewWriterSize(f, 32<<10)}
	var hdr [wavHeaderLen]byte
	_, r.err = r.w.Write(hdr[:])
	return r, nil
}

// write appends samples, clipped to [-1, 1] and rounded to 16 bits.
func (r *recorder) write(pcm []float32) {
	if r.err != nil {
		return
	}
	var b [2 * packetSamples]byte
	for len(pcm) > 0 {
		n := min(len(pcm), packetSamples)
		for i, v := range pcm[:n] {
			x := math.Round(float64(v) * 32767)
			x = math.Max(-32768, math.Min(32767, x))
			binary.LittleEndian.PutUint16(b[2*i:], uint16(int16(x)))
		}
		if _, err := r.w.Write(b[:2*n]); err != nil {
			r.err = err
			return
		}
		r.samples += int64(n)
		pcm = pcm[n:]
	}
}

// finish trims the recording to keep samples, writes the header and the
// sidecar, and renames both into place.
func (r *recorder) finish(keep int64, sc Sidecar) error {
	defer func() { _ = os.Remove(r.f.Name()) }()
	err := r.err
	if err == nil {
		err = r.w.Flush()
	}
	keep = max(0, min(keep, r.samples))
	if err == nil && keep < r.samples {
		err = r.f.Truncate(wavHeaderLen + 2*keep)
	}
	if err == nil {
		_, err = r.f.WriteAt(wavHeader(keep), 0)
	}
	if err == nil {
		err = r.f.Chmod(0o644) // CreateTemp makes 0600; recordings are CI artefacts
	}
	if err == nil {
		err = r.f.Sync()
	}
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	wavPath := filepath.Join(r.dir, r.base+".wav")
	if err == nil {
		err = os.Rename(r.f.Name(), wavPath)
	}
	if err != nil {
		return fmt.Errorf("write recording %s: %w", wavPath, err)
	}
	sc.Samples = keep
	sc.SampleRate = SampleRate
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sidecar %s: %w", r.base, err)
	}
	return writeFileAtomic(filepath.Join(r.dir, r.base+".json"), append(b, '\n'))
}

// wavHeader returns a canonical RIFF/WAVE header for mono 16-bit PCM
// (WAVE_FORMAT_PCM) at SampleRate holding n samples.
func wavHeader(n int64) []byte {
	data := uint32(min(2*n, math.MaxUint32-36))
	b := make([]byte, wavHeaderLen)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], 36+data)
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], SampleRate)
	binary.LittleEndian.PutUint32(b[28:], SampleRate*2)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], data)
	return b
}

func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
