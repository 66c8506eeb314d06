package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loalang/loalang/internal/atomicfile"
)

// Library limits and defaults.
const (
	// DefaultMaxBytes bounds an upload: a 10-minute mono 48 kHz 16-bit WAV
	// is 55 MiB, and compressed formats are far smaller.
	DefaultMaxBytes = 64 << 20
	// DefaultMaxDuration bounds a clip. Announcements run minutes; the
	// bound also caps memory (48 kHz float32 is 11.5 MB per minute).
	DefaultMaxDuration = 10 * time.Minute
	// fileExt is the stored files' extension (Ogg Opus, RFC 7845 §9).
	fileExt = ".opus"
)

// Config configures a Library. Zero values select the defaults.
type Config struct {
	// Dir is the directory holding the stored clips; it is created if needed.
	Dir string
	// MaxBytes is the largest accepted upload (default DefaultMaxBytes).
	MaxBytes int64
	// MaxDuration is the longest accepted clip (default DefaultMaxDuration).
	MaxDuration time.Duration
	// TargetLUFS is the integrated loudness clips are normalised to
	// (default DefaultTargetLUFS, -16).
	TargetLUFS float64
	// PeakCeilingDB is the true-peak ceiling in dBFS, negative
	// (default DefaultPeakCeiling, -1).
	PeakCeilingDB float64
	// Bitrate is the Opus bitrate in bit/s (default DefaultBitrate).
	Bitrate int
	// Queue bounds the imports in flight: streaming their upload to a
	// temporary file or waiting for the decoder (default DefaultQueue).
	// Import refuses more with ErrBusy before reading their body.
	Queue int
	// Logger receives import events; nil discards them.
	Logger *slog.Logger
}

// DefaultQueue is the default Config.Queue.
const DefaultQueue = 4

// Info describes a stored clip. Persisting it (in bbolt) is the caller's job.
type Info struct {
	// ID is the hex SHA-256 of the stored Ogg Opus file; it names the file.
	ID string `json:"id"`
	// SourceName is the name the caller gave the upload (a file name or
	// "tts"); it is not part of the stored bytes.
	SourceName string `json:"source_name"`
	// SourceSHA256 is the hex SHA-256 of the uploaded bytes (for ImportPCM,
	// of the float32 little-endian samples).
	SourceSHA256 string `json:"source_sha256"`
	// Codec is always "opus".
	Codec string `json:"codec"`
	// SampleRate is always 48000.
	SampleRate int `json:"sample_rate"`
	// Bitrate is the Opus target bitrate in bit/s.
	Bitrate int `json:"bitrate"`
	// DurationMS is the audio duration in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Packets is the number of Opus packets.
	Packets int `json:"packets"`
	// FrameMS is the duration of each packet, always 20.
	FrameMS int `json:"frame_ms"`
	// LoudnessLUFS is the source's integrated loudness before normalisation.
	LoudnessLUFS float64 `json:"loudness_lufs"`
	// GainDB is the gain normalisation applied.
	GainDB float64 `json:"gain_db"`
	// Name is what people call the clip in the library (the upload's file
	// name until renamed); Tags group it. Neither is part of the stored bytes.
	Name string   `json:"name,omitempty"`
	Tags []string `json:"tags,omitempty"`
	// Language is the clip's language tag (Languages); "" in records made
	// before languages existed means DefaultLanguage.
	Language string `json:"language,omitempty"`
}

// Library turns uploads into normalised 20 ms Opus packets once, stores them
// as content-addressed Ogg Opus files, and reads the packets back for
// streaming. It is safe for concurrent use; imports run one at a time so a
// small controller never holds two decoded clips in memory at once.
type Library struct {
	cfg Config
	log *slog.Logger
	sem chan struct{}
	// queue holds one token per import in flight (Config.Queue).
	queue chan struct{}
}

// NewLibrary creates the directory if needed, removes temporary files left
// by an import interrupted by a power cut, and returns the library.
func NewLibrary(cfg Config) (*Library, error) {
	if cfg.Dir == "" {
		return nil, errors.New("media: library directory not set")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.TargetLUFS == 0 {
		cfg.TargetLUFS = DefaultTargetLUFS
	}
	if cfg.PeakCeilingDB == 0 {
		cfg.PeakCeilingDB = DefaultPeakCeiling
	}
	if cfg.PeakCeilingDB > 0 {
		return nil, fmt.Errorf("media: peak ceiling %g dBFS must not be above 0", cfg.PeakCeilingDB)
	}
	if cfg.Bitrate == 0 {
		cfg.Bitrate = DefaultBitrate
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if _, err := newEncoder(cfg.Bitrate); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create media dir %s: %w", cfg.Dir, err)
	}
	stale, _ := filepath.Glob(filepath.Join(cfg.Dir, ".tmp-*"))
	for _, p := range stale {
		_ = os.Remove(p)
	}
	return &Library{cfg: cfg, log: log.With("component", "media"), sem: make(chan struct{}, 1), queue: make(chan struct{}, cfg.Queue)}, nil
}

// Import streams an upload to a temporary file in the library directory
// (at most MaxBytes+1 bytes, so an oversize one is refused without reading
// it all, and never held in memory while it arrives), then, one import at a
// time, detects its format by content, decodes, resamples to 48 kHz,
// normalises loudness, encodes 20 ms Opus packets and stores them. The
// temporary file is removed on success and on failure. Importing identical
// content again returns the same ID without writing a second file. With
// Config.Queue imports already in flight it returns ErrBusy before reading
// r. Errors wrap the package's sentinels.
func (l *Library) Import(ctx context.Context, sourceName string, r io.Reader) (Info, error) {
	c, err := l.Encode(ctx, sourceName, r)
	if err != nil {
		return Info{}, err
	}
	return l.write(c)
}

// Clip is an encoded clip not yet stored: its description and its Ogg
// Opus file (RFC 7845), whose SHA-256 is Info.ID.
type Clip struct {
	Info Info
	File []byte
}

// Encode is Import without the storing: it streams, decodes, normalises
// and encodes the upload (with the same queue, bounds and errors) and
// returns the Ogg Opus file for the caller to store, so that one owner
// (the media catalog) writes the file and its index entry together.
func (l *Library) Encode(ctx context.Context, sourceName string, r io.Reader) (Clip, error) {
	select {
	case l.queue <- struct{}{}:
	default:
		return Clip{}, fmt.Errorf("upload %q: %d imports already in flight: %w", sourceName, l.cfg.Queue, ErrBusy)
	}
	defer func() { <-l.queue }()
	tmp, sum, n, err := l.spool(sourceName, r)
	if tmp != "" {
		defer os.Remove(tmp)
	}
	if err != nil {
		return Clip{}, err
	}
	if n == 0 {
		return Clip{}, fmt.Errorf("upload %q: %w", sourceName, ErrEmpty)
	}
	if err := l.acquire(ctx); err != nil {
		return Clip{}, err
	}
	defer l.release()
	// Decoders work on a byte slice: the file mapped into memory, outside
	// the Go heap, for the one import holding the decoder.
	data, unmap, err := mapFile(tmp)
	if err != nil {
		return Clip{}, fmt.Errorf("read upload %q: %w", sourceName, err)
	}
	a, err := Decode(data, l.cfg.MaxDuration)
	data = nil
	if uerr := unmap(); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return Clip{}, fmt.Errorf("import %q: %w", sourceName, err)
	}
	if err := ctx.Err(); err != nil {
		return Clip{}, err
	}
	pcm := Resample(a.Samples, a.Rate, OpusRate)
	a.Samples = nil
	return l.encode(ctx, sourceName, sum, pcm)
}

// spool copies r into a new temporary file, hashing it on the way. It
// returns the file's path (to be removed by the caller, also on error),
// the SHA-256 and the size. More than MaxBytes is ErrTooLarge.
func (l *Library) spool(sourceName string, r io.Reader) (path string, sum [32]byte, n int64, err error) {
	f, err := os.CreateTemp(l.cfg.Dir, ".tmp-upload-*")
	if err != nil {
		return "", sum, 0, fmt.Errorf("create temp file in %s: %w", l.cfg.Dir, err)
	}
	path = f.Name()
	h := sha256.New()
	n, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(r, l.cfg.MaxBytes+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return path, sum, n, fmt.Errorf("read upload %q: %w", sourceName, err)
	}
	if n > l.cfg.MaxBytes {
		return path, sum, n, fmt.Errorf("upload %q is larger than %d bytes: %w", sourceName, l.cfg.MaxBytes, ErrTooLarge)
	}
	h.Sum(sum[:0])
	return path, sum, n, nil
}

// ImportPCM stores mono 48 kHz float32 samples (as Speak returns) through the
// same normalise-encode-store path as Import. pcm is not modified.
func (l *Library) ImportPCM(ctx context.Context, sourceName string, pcm []float32) (Info, error) {
	if len(pcm) == 0 {
		return Info{}, fmt.Errorf("import %q: %w", sourceName, ErrEmpty)
	}
	if d := durationOf(int64(len(pcm)), OpusRate); d > l.cfg.MaxDuration {
		return Info{}, fmt.Errorf("import %q: %w", sourceName, tooLong(d, l.cfg.MaxDuration))
	}
	if err := l.acquire(ctx); err != nil {
		return Info{}, err
	}
	defer l.release()
	h := sha256.New()
	var b [4]byte
	for _, v := range pcm {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return Info{}, fmt.Errorf("import %q: non-finite sample: %w", sourceName, ErrCorrupt)
		}
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	c, err := l.encode(ctx, sourceName, sum, append([]float32(nil), pcm...))
	if err != nil {
		return Info{}, err
	}
	return l.write(c)
}

func (l *Library) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Library) release() { <-l.sem }

// encode normalises pcm (owned, 48 kHz) in place and encodes it.
func (l *Library) encode(ctx context.Context, sourceName string, srcSum [32]byte, pcm []float32) (Clip, error) {
	if d := durationOf(int64(len(pcm)), OpusRate); d > l.cfg.MaxDuration {
		return Clip{}, fmt.Errorf("import %q: %w", sourceName, tooLong(d, l.cfg.MaxDuration))
	}
	gain, measured, err := Normalize(pcm, l.cfg.TargetLUFS, l.cfg.PeakCeilingDB)
	if err != nil {
		return Clip{}, fmt.Errorf("import %q: %w", sourceName, err)
	}
	packets, err := EncodePCM(ctx, pcm, l.cfg.Bitrate)
	if err != nil {
		return Clip{}, fmt.Errorf("import %q: %w", sourceName, err)
	}
	var file bytes.Buffer
	// The serial number comes from the source hash so the same input always
	// yields the same bytes, hence the same ID.
	if err := writeOggOpus(&file, binary.BigEndian.Uint32(srcSum[:4]), packets, int64(len(pcm))); err != nil {
		return Clip{}, fmt.Errorf("import %q: %w", sourceName, err)
	}
	fileSum := sha256.Sum256(file.Bytes())
	info := Info{
		ID:           hex.EncodeToString(fileSum[:]),
		SourceName:   sourceName,
		SourceSHA256: hex.EncodeToString(srcSum[:]),
		Codec:        "opus",
		SampleRate:   OpusRate,
		Bitrate:      l.cfg.Bitrate,
		DurationMS:   int64(len(pcm)) * 1000 / OpusRate,
		Packets:      len(packets),
		FrameMS:      FrameMS,
		LoudnessLUFS: math.Round(measured*10) / 10,
		GainDB:       math.Round(gain*10) / 10,
	}
	return Clip{Info: info, File: file.Bytes()}, nil
}

// write stores an encoded clip in the library directory, unless the same
// content is there already.
func (l *Library) write(c Clip) (Info, error) {
	info := c.Info
	path := filepath.Join(l.cfg.Dir, info.ID+fileExt)
	if _, err := os.Stat(path); err == nil {
		l.log.Info("clip already stored", "clip", info.ID, "source", info.SourceName)
		return info, nil
	}
	if err := writeFileAtomic(path, c.File); err != nil {
		return Info{}, err
	}
	l.log.Info("clip imported", "clip", info.ID, "source", info.SourceName, "duration_ms", info.DurationMS,
		"packets", info.Packets, "loudness_lufs", info.LoudnessLUFS, "gain_db", info.GainDB)
	return info, nil
}

// writeFileAtomic writes a clip so that after a power cut it is either
// wholly there or absent.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.WriteBytes(path, 0o640, data)
}

// validID reports whether id looks like a clip ID (64 lowercase hex digits),
// which also keeps it from naming a path outside the library.
func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	return strings.Trim(id, "0123456789abcdef") == ""
}

// FileName is the name of a clip's stored Ogg Opus file in the library
// directory.
func FileName(id string) string { return id + fileExt }

// ValidID reports whether id is a clip ID: 64 lowercase hex digits (the
// SHA-256 of the file), which cannot name a path outside the library.
func ValidID(id string) bool { return validID(id) }

// Path returns the stored Ogg Opus file for a clip, or ErrNotFound.
func (l *Library) Path(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("clip %q: %w", id, ErrNotFound)
	}
	p := filepath.Join(l.cfg.Dir, id+fileExt)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("clip %s: %w", id, ErrNotFound)
		}
		return "", fmt.Errorf("stat clip %s: %w", id, err)
	}
	return p, nil
}

// Packets reads a stored clip back as its 20 ms Opus packets, in order.
func (l *Library) Packets(id string) ([][]byte, error) {
	p, err := l.Path(id)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read clip %s: %w", id, err)
	}
	pkts, err := readOggStream(data, "OpusHead")
	if err != nil {
		return nil, fmt.Errorf("read clip %s: %w", id, err)
	}
	if len(pkts) < 2 {
		return nil, fmt.Errorf("read clip %s: no headers: %w", id, ErrCorrupt)
	}
	out := make([][]byte, 0, len(pkts)-2)
	for _, pk := range pkts[2:] {
		out = append(out, pk.Data)
	}
	return out, nil
}

// Remove deletes a stored clip. Removing a missing clip is ErrNotFound.
func (l *Library) Remove(id string) error {
	p, err := l.Path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove clip %s: %w", id, err)
	}
	return nil
}

// EncodePCM encodes mono 48 kHz samples into 20 ms Opus packets at bitrate
// bit/s (0 selects DefaultBitrate) with libopus' VoIP application. The
// input is padded with silence to cover the encoder's 312-sample lookahead
// and a whole last frame, so a decoder that honours the Ogg pre-skip and end
// granule (RFC 7845 §4.2, §4.5) returns exactly len(pcm) samples.
func EncodePCM(ctx context.Context, pcm []float32, bitrate int) ([][]byte, error) {
	enc, err := newEncoder(bitrate)
	if err != nil {
		return nil, err
	}
	n := (len(pcm) + opusPreSkip + FrameSamples - 1) / FrameSamples
	packets := make([][]byte, 0, n)
	frame := make([]float32, FrameSamples)
	for i := 0; i < n; i++ {
		if i%50 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		clear(frame)
		if lo := i * FrameSamples; lo < len(pcm) {
			copy(frame, pcm[lo:min(lo+FrameSamples, len(pcm))])
		}
		p, err := enc.encode(frame)
		if err != nil {
			return nil, err
		}
		packets = append(packets, p)
	}
	return packets, nil
}
