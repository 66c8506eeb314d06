package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// TTS limits.
const (
	// MaxTextRunes bounds the text Speak accepts: about five minutes of
	// espeak-ng speech, and a bound on the work one request can cause.
	MaxTextRunes = 4000
	// DefaultVoice is espeak-ng's Vietnamese voice.
	DefaultVoice = "vi"
	// maxTTSOutput bounds the WAV read back from espeak-ng (22.05 kHz
	// 16-bit mono: ~45 minutes), so a misbehaving binary cannot exhaust memory.
	maxTTSOutput = 120 << 20
)

// espeakBinary is the text-to-speech program; tests may not change it, but
// keeping it in one place documents the dependency.
const espeakBinary = "espeak-ng"

// Speak synthesises text with espeak-ng and returns mono float32 samples at
// 48 kHz, ready for Library.ImportPCM. voice is an espeak-ng voice name
// (empty selects DefaultVoice, Vietnamese). The text goes to espeak-ng on
// standard input, never on its command line and never through a shell, so it
// cannot be taken for an option. Errors: ErrEmpty for blank text, ErrTooLong
// beyond MaxTextRunes, ErrUnsupported for a malformed voice name or invalid
// UTF-8, ErrTTSUnavailable when espeak-ng is not installed. Speak itself
// has no concurrency limit: the daemon speaks through a TTS, which has.
func Speak(ctx context.Context, text, voice string) ([]float32, error) {
	if err := checkText(text, MaxTextRunes); err != nil {
		return nil, err
	}
	return speak(ctx, text, voice)
}

// checkText refuses blank text, invalid UTF-8 and text over maxRunes.
func checkText(text string, maxRunes int) error {
	if strings.TrimSpace(text) == "" {
		return fmt.Errorf("tts: no text: %w", ErrEmpty)
	}
	if !utf8.ValidString(text) {
		return fmt.Errorf("tts: text is not valid UTF-8: %w", ErrUnsupported)
	}
	if n := utf8.RuneCountInString(text); n > maxRunes {
		return fmt.Errorf("tts: text has %d characters, the limit is %d: %w", n, maxRunes, ErrTooLong)
	}
	return nil
}

// speak runs espeak-ng once. Cancelling ctx kills the process (SIGKILL
// from exec.CommandContext), and WaitDelay bounds the wait for its pipes.
func speak(ctx context.Context, text, voice string) ([]float32, error) {
	if voice == "" {
		voice = DefaultVoice
	}
	if !validVoice(voice) {
		return nil, fmt.Errorf("tts: invalid voice name %q: %w", voice, ErrUnsupported)
	}
	bin, err := exec.LookPath(espeakBinary)
	if err != nil {
		return nil, fmt.Errorf("tts: %s not found: %w", espeakBinary, ErrTTSUnavailable)
	}
	// -b 1: input is UTF-8. Vietnamese needs its diacritics intact.
	cmd := exec.CommandContext(ctx, bin, "-b", "1", "-v", voice, "--stdout")
	cmd.WaitDelay = time.Second
	cmd.Stdin = strings.NewReader(text)
	var stdout, stderr limitedBuffer
	stdout.limit, stderr.limit = maxTTSOutput, 4096
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "voice") {
			return nil, fmt.Errorf("tts: espeak-ng voice %q: %s: %w", voice, msg, ErrUnsupported)
		}
		return nil, fmt.Errorf("tts: espeak-ng: %v: %s", err, msg)
	}
	if stdout.overflow {
		return nil, fmt.Errorf("tts: espeak-ng output exceeds %d bytes: %w", maxTTSOutput, ErrTooLong)
	}
	// espeak-ng streams its WAV, so the data size is a placeholder: lenient.
	a, err := decodeWAV(stdout.Bytes(), 0, true)
	if err != nil {
		return nil, fmt.Errorf("tts: parse espeak-ng output: %w", err)
	}
	if len(a.Samples) == 0 {
		return nil, fmt.Errorf("tts: espeak-ng produced no audio: %w", ErrSilent)
	}
	return Resample(a.Samples, a.Rate, OpusRate), nil
}

// TTSConfig configures a TTS. Zero values select the defaults.
type TTSConfig struct {
	// Voice is the espeak-ng voice (default DefaultVoice).
	Voice string
	// Concurrency is how many espeak-ng processes may run at once
	// (default 1): each takes a whole core, for up to half a minute on
	// MaxTextRunes of text, on a two-core box that also streams audio.
	Concurrency int
	// Queue is how many requests may wait for a free process; a request
	// beyond it fails at once with ErrBusy. Negative means none may wait.
	Queue int
	// MaxRunes bounds the text of one request (default and at most
	// MaxTextRunes).
	MaxRunes int
}

// TTS runs espeak-ng for the daemon with a bound on the processes running at
// once and on the requests waiting for one, so that a burst of long texts
// cannot take every core (issue: six 4,000-character requests ran six
// espeak-ng processes at once, 30 s each). It is safe for concurrent use.
type TTS struct {
	cfg   TTSConfig
	slots chan struct{}

	mu      sync.Mutex
	waiting int
}

// NewTTS returns a TTS with cfg's limits.
func NewTTS(cfg TTSConfig) *TTS {
	if cfg.Voice == "" {
		cfg.Voice = DefaultVoice
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.MaxRunes <= 0 || cfg.MaxRunes > MaxTextRunes {
		cfg.MaxRunes = MaxTextRunes
	}
	return &TTS{cfg: cfg, slots: make(chan struct{}, cfg.Concurrency)}
}

// Speak is the package's Speak with the TTS's limits, in the espeak-ng
// voice of language (VoiceFor; "" is the configured voice): it checks the
// text and the language first, then takes a free espeak-ng slot, waiting in
// a bounded queue until ctx ends. ErrBusy means the queue is full;
// ErrNoVoice that espeak-ng cannot speak the language.
func (t *TTS) Speak(ctx context.Context, text, language string) ([]float32, error) {
	if err := checkText(text, t.cfg.MaxRunes); err != nil {
		return nil, err
	}
	voice := t.cfg.Voice
	if language != "" {
		v, err := VoiceFor(language)
		if err != nil {
			return nil, fmt.Errorf("tts: %w", err)
		}
		voice = v
	}
	select {
	case t.slots <- struct{}{}:
	default:
		t.mu.Lock()
		if t.waiting >= max(t.cfg.Queue, 0) {
			t.mu.Unlock()
			return nil, fmt.Errorf("tts: %d requests already waiting for espeak-ng: %w", t.cfg.Queue, ErrBusy)
		}
		t.waiting++
		t.mu.Unlock()
		var err error
		select {
		case t.slots <- struct{}{}:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.mu.Lock()
		t.waiting--
		t.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	defer func() { <-t.slots }()
	return speak(ctx, text, voice)
}

// validVoice accepts espeak-ng voice names such as "vi", "en-us",
// "vi+f3" or "mb-en1": letters, digits and - + _ /, not starting with '-'
// (which espeak-ng would parse as an option).
func validVoice(v string) bool {
	if v == "" || len(v) > 64 || v[0] == '-' {
		return false
	}
	for _, c := range v {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-+_/", c)
		if !ok {
			return false
		}
	}
	return !strings.Contains(v, "..")
}

// limitedBuffer is a bytes.Buffer that stops growing past limit.
type limitedBuffer struct {
	bytes.Buffer
	limit    int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		b.overflow = true
		p = p[:max(0, b.limit-b.Len())]
		b.Buffer.Write(p)
		return 0, errors.New("output limit exceeded")
	}
	return b.Buffer.Write(p)
}
