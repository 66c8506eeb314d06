package hall

import (
	"fmt"
	"time"
)

// Config configures the hall output. Board and Sink are each optional; a
// Config with neither does nothing.
type Config struct {
	Board *BoardConfig `yaml:"board"`
	Sink  *SinkConfig  `yaml:"sink"`
}

// BoardConfig describes the RS-485 Modbus RTU relay board.
type BoardConfig struct {
	// Port is the serial device, e.g. /dev/ttyUSB0 or a stable
	// /dev/serial/by-id/ link.
	Port string `yaml:"port"`
	// Baud is the line speed; default 9600. Framing is 8N1.
	Baud int `yaml:"baud"`
	// SlaveID is the board's Modbus address, 1–247; default 1.
	SlaveID uint8 `yaml:"slave_id"`
	// AmpCoil is the coil (zero-based) that powers the amplifier.
	AmpCoil uint16 `yaml:"amp_coil"`
	// Zones maps each wired zone name to its coil.
	Zones map[string]uint16 `yaml:"zones"`
	// Warmup is waited between amplifier on and zones on; default 2s.
	Warmup time.Duration `yaml:"warmup"`
	// Tail is waited after the audio ends before zones go off; default 1s.
	Tail time.Duration `yaml:"tail"`
	// IdleOff is waited after zones go off before the amplifier goes off,
	// unless a new broadcast comes; default 30s.
	IdleOff time.Duration `yaml:"idle_off"`
	// Timeout bounds each Modbus response; default 300ms.
	Timeout time.Duration `yaml:"timeout"`
	// Poll is how often the coils are read back while the port is idle, so
	// an unplugged or reset board is noticed; default 1s.
	Poll time.Duration `yaml:"poll"`
	// ReopenMin and ReopenMax bound the exponential backoff between reopen
	// attempts after a fault; defaults 200ms and 10s.
	ReopenMin time.Duration `yaml:"reopen_min"`
	ReopenMax time.Duration `yaml:"reopen_max"`
}

// SinkConfig describes the sound-card output.
type SinkConfig struct {
	// OutputLatency is how long before its play-at time a sample is handed
	// to the sound system: the delay from oto to the amplifier input.
	// Calibrate it so the hall and the IP speakers do not echo; default
	// 100ms (oto's ALSA buffer is about 43ms at 48 kHz, plus the player
	// buffer that must hold at least one 21ms period).
	OutputLatency time.Duration `yaml:"output_latency"`
	// Channels is 1 (mono) or 2 (the mono stream on both channels); default 2.
	Channels int `yaml:"channels"`
}

// withDefaults returns a copy with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Board != nil {
		b := *c.Board
		if b.Baud == 0 {
			b.Baud = 9600
		}
		if b.SlaveID == 0 {
			b.SlaveID = 1
		}
		def := func(d *time.Duration, v time.Duration) {
			if *d == 0 {
				*d = v
			}
		}
		def(&b.Warmup, 2*time.Second)
		def(&b.Tail, time.Second)
		def(&b.IdleOff, 30*time.Second)
		def(&b.Timeout, 300*time.Millisecond)
		def(&b.Poll, time.Second)
		def(&b.ReopenMin, 200*time.Millisecond)
		def(&b.ReopenMax, 10*time.Second)
		c.Board = &b
	}
	if c.Sink != nil {
		s := *c.Sink
		if s.OutputLatency == 0 {
			s.OutputLatency = 100 * time.Millisecond
		}
		if s.Channels == 0 {
			s.Channels = 2
		}
		c.Sink = &s
	}
	return c
}

// Validate checks the configuration after defaults.
func (c Config) Validate() error {
	if b := c.Board; b != nil {
		if b.Port == "" {
			return fmt.Errorf("%w: board.port is empty", ErrConfig)
		}
		if b.SlaveID > 247 {
			return fmt.Errorf("%w: board.slave_id %d outside 1–247", ErrConfig, b.SlaveID)
		}
		if b.Baud < 0 {
			return fmt.Errorf("%w: board.baud %d", ErrConfig, b.Baud)
		}
		seen := map[uint16]string{b.AmpCoil: "amplifier"}
		for z, coil := range b.Zones {
			if other, dup := seen[coil]; dup {
				return fmt.Errorf("%w: coil %d used by zone %q and %s", ErrConfig, coil, z, other)
			}
			seen[coil] = "zone " + z
		}
		lo, hi := b.coilRange()
		if int(hi)-int(lo)+1 > 1968 {
			return fmt.Errorf("%w: coils %d–%d span more than 1968", ErrConfig, lo, hi)
		}
		for _, d := range []time.Duration{b.Warmup, b.Tail, b.IdleOff, b.Timeout, b.Poll, b.ReopenMin, b.ReopenMax} {
			if d < 0 {
				return fmt.Errorf("%w: negative duration", ErrConfig)
			}
		}
		if b.ReopenMax < b.ReopenMin {
			return fmt.Errorf("%w: board.reopen_max below reopen_min", ErrConfig)
		}
	}
	if s := c.Sink; s != nil {
		if s.Channels != 1 && s.Channels != 2 {
			return fmt.Errorf("%w: sink.channels %d, want 1 or 2", ErrConfig, s.Channels)
		}
		if s.OutputLatency < 0 || s.OutputLatency > 2*time.Second {
			return fmt.Errorf("%w: sink.output_latency %v outside 0–2s", ErrConfig, s.OutputLatency)
		}
	}
	return nil
}

// coilRange returns the lowest and highest coil in use.
func (b *BoardConfig) coilRange() (lo, hi uint16) {
	lo, hi = b.AmpCoil, b.AmpCoil
	for _, c := range b.Zones {
		lo, hi = min(lo, c), max(hi, c)
	}
	return lo, hi
}
