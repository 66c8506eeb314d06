// Package relayboard simulates an RS-485 Modbus RTU relay board, the kind
// that switches a village hall's amplifier and wired loudspeaker lines. The
// slave end of an in-process pseudo-terminal stands in for the USB serial
// adapter, reached through a stable symlink so a daemon can name it in its
// config and find it again after a simulated replug.
//
// It implements the coil functions 0x01, 0x05 and 0x0F of the Modbus
// Application Protocol v1.1b3 §6 with RTU framing and CRC-16/MODBUS (Modbus
// over Serial Line v1.02 §2.5), on its own: it shares no code with the
// daemon's master, so the two can disagree and a test will notice.
//
// Faults are injected on demand: corrupted CRCs, requests left unanswered,
// and unplugging (the pty disappears, its link is removed).
package relayboard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Modbus function and exception codes (Modbus Application Protocol v1.1b3
// §5.1, §7).
const (
	fcReadCoils          = 0x01
	fcWriteSingleCoil    = 0x05
	fcWriteMultipleCoils = 0x0F

	exIllegalFunction = 0x01
	exIllegalAddress  = 0x02
	exIllegalValue    = 0x03
)

// interFrameTimeout is how long a partial frame may wait for its next byte
// before it is discarded, as a slave does after a silence (Modbus over
// Serial Line v1.02 §2.5.1.1, generously widened for a loaded test host).
const interFrameTimeout = 100 * time.Millisecond

// ErrUnplugged is returned by operations that need the board plugged in.
var ErrUnplugged = errors.New("relayboard: unplugged")

// Options configures a simulated board.
type Options struct {
	// Link is the path of the symlink to the pty slave device. Required.
	// It is replaced atomically on replug.
	Link string
	// SlaveID is the Modbus address the board answers to; default 1.
	SlaveID uint8
	// Coils is the number of relays; default 8.
	Coils int
	// ResponseDelay is waited before each answer, to model a slow board.
	ResponseDelay time.Duration
}

// Change is one coil switching, as the board saw it.
type Change struct {
	At   time.Time
	Coil int
	On   bool
}

// Board is a simulated relay board. Its methods are safe for concurrent use.
type Board struct {
	opts Options

	mu        sync.Mutex
	coils     []bool
	history   []Change
	crcErrs   int
	timeouts  int
	requests  int
	badFrames int
	master    *os.File
	tty       *os.File
	done      chan struct{}
	closed    bool
}

// New creates a board and plugs it in: the pty exists and Link points at it.
func New(opts Options) (*Board, error) {
	if opts.Link == "" {
		return nil, errors.New("relayboard: Options.Link is required")
	}
	if opts.SlaveID == 0 {
		opts.SlaveID = 1
	}
	if opts.Coils <= 0 {
		opts.Coils = 8
	}
	b := &Board{opts: opts, coils: make([]bool, opts.Coils)}
	if err := b.Replug(); err != nil {
		return nil, err
	}
	return b, nil
}

// Path returns the stable device path (the symlink) to open.
func (b *Board) Path() string { return b.opts.Link }

// Coils returns a copy of the current relay states.
func (b *Board) Coils() []bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bool(nil), b.coils...)
}

// History returns every coil change so far, oldest first.
func (b *Board) History() []Change {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Change(nil), b.history...)
}

// Requests returns how many well-formed requests addressed to this board
// arrived, answered or not.
func (b *Board) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

// BadFrames returns how many received frames failed their CRC or were
// truncated by a silence.
func (b *Board) BadFrames() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.badFrames
}

// InjectCRCErrors makes the next n answers carry a corrupted CRC. The
// requests themselves are carried out, as when noise hits only the reply.
func (b *Board) InjectCRCErrors(n int) {
	b.mu.Lock()
	b.crcErrs += n
	b.mu.Unlock()
}

// InjectTimeouts makes the board ignore the next n requests entirely, as if
// they were lost on the line: nothing is switched, nothing is answered.
func (b *Board) InjectTimeouts(n int) {
	b.mu.Lock()
	b.timeouts += n
	b.mu.Unlock()
}

// SetCoils overwrites relay states without recording history, to model a
// board that lost power and came back with its relays released.
func (b *Board) SetCoils(v []bool) {
	b.mu.Lock()
	copy(b.coils, v)
	b.mu.Unlock()
}

// Unplug closes the pty master, so the device disappears and a process that
// holds it open gets I/O errors, and removes the link. Coil states survive
// (the board keeps power). It is a no-op when already unplugged.
func (b *Board) Unplug() error {
	b.mu.Lock()
	master, tty, done := b.master, b.tty, b.done
	b.master, b.tty, b.done = nil, nil, nil
	b.mu.Unlock()
	if master == nil {
		return nil
	}
	err := errors.Join(master.Close(), tty.Close())
	<-done
	if rerr := os.Remove(b.opts.Link); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("relayboard: unplug: %w", err)
	}
	return nil
}

// Replug creates a new pty and points Link at it. It is a no-op when
// already plugged in.
func (b *Board) Replug() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("relayboard: closed")
	}
	if b.master != nil {
		return nil
	}
	master, tty, err := openPty()
	if err != nil {
		return fmt.Errorf("relayboard: open pty: %w", err)
	}
	if err := makeRaw(tty); err != nil {
		master.Close()
		tty.Close()
		return fmt.Errorf("relayboard: raw mode: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(b.opts.Link), "."+filepath.Base(b.opts.Link)+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(tty.Name(), tmp); err != nil {
		master.Close()
		tty.Close()
		return fmt.Errorf("relayboard: link: %w", err)
	}
	if err := os.Rename(tmp, b.opts.Link); err != nil {
		master.Close()
		tty.Close()
		return fmt.Errorf("relayboard: link: %w", err)
	}
	b.master, b.tty = master, tty
	b.done = make(chan struct{})
	go b.serve(master, b.done)
	return nil
}

// Close unplugs the board for good.
func (b *Board) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.Unplug()
}

// openPty opens a pty pair whose master is in non-blocking mode and so
// registered with the runtime poller: read deadlines work on it, and Close
// unblocks a pending Read (creack/pty hands out a blocking *os.File).
func openPty() (master, tty *os.File, err error) {
	m, tty, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	fd, err := unix.Dup(int(m.Fd()))
	if err != nil {
		tty.Close()
		return nil, nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		tty.Close()
		return nil, nil, err
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), m.Name()), tty, nil
}

// makeRaw puts the line discipline in raw mode so bytes pass untouched
// before the master's own open configures the port (cfmakeraw(3)).
func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// serve reads requests from the master until it is closed.
func (b *Board) serve(master *os.File, done chan struct{}) {
	defer close(done)
	buf := make([]byte, 0, 512)
	tmp := make([]byte, 256)
	for {
		if len(buf) > 0 {
			master.SetReadDeadline(time.Now().Add(interFrameTimeout))
		} else {
			master.SetReadDeadline(time.Time{})
		}
		n, err := master.Read(tmp)
		if n > 0 {
			buf = append(buf, tmp[:n]...)
			buf = b.process(master, buf)
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A silence ends the frame: whatever is left is incomplete.
			b.mu.Lock()
			b.badFrames++
			b.mu.Unlock()
			buf = buf[:0]
			continue
		}
		if err != nil {
			return
		}
	}
}

// frameLen returns the length of the request at the head of buf, or 0 when
// more bytes are needed, or -1 when the function is unknown (the frame then
// runs to the next silence, which serve treats as garbage).
func frameLen(buf []byte) int {
	if len(buf) < 2 {
		return 0
	}
	switch buf[1] {
	case fcReadCoils, fcWriteSingleCoil:
		return 8
	case fcWriteMultipleCoils:
		if len(buf) < 7 {
			return 0
		}
		return 9 + int(buf[6])
	}
	return -1
}

// process handles every complete frame at the head of buf and returns what
// is left.
func (b *Board) process(w *os.File, buf []byte) []byte {
	for {
		n := frameLen(buf)
		if n < 0 {
			// Unknown function: an honest slave would answer "illegal
			// function" after the silence; it cannot know where the frame
			// ends, so it is answered once CRC-valid over the whole buffer.
			if len(buf) >= 4 && crc(buf[:len(buf)-2]) == binary.LittleEndian.Uint16(buf[len(buf)-2:]) {
				b.answer(w, buf[0], exception(buf[1], exIllegalFunction))
				return buf[:0]
			}
			return buf
		}
		if n == 0 || len(buf) < n {
			return buf
		}
		frame := buf[:n]
		if crc(frame[:n-2]) != binary.LittleEndian.Uint16(frame[n-2:]) {
			// Modbus over Serial Line v1.02 §2.5.1.2: a frame with a bad CRC
			// is discarded without reply, and so is the rest of the burst.
			b.mu.Lock()
			b.badFrames++
			b.mu.Unlock()
			return buf[:0]
		}
		if frame[0] == b.opts.SlaveID || frame[0] == 0 {
			pdu := b.execute(frame[0], frame[1:n-2])
			if pdu != nil && frame[0] != 0 {
				b.answer(w, frame[0], pdu)
			}
		}
		buf = buf[n:]
	}
}

func exception(fc, code byte) []byte { return []byte{fc | 0x80, code} }

// execute carries out one request PDU and returns the response PDU, or nil
// when the request is to be ignored (an injected timeout).
func (b *Board) execute(addr byte, pdu []byte) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
	if b.timeouts > 0 {
		b.timeouts--
		return nil
	}
	fc := pdu[0]
	switch fc {
	case fcReadCoils:
		start, qty := int(binary.BigEndian.Uint16(pdu[1:])), int(binary.BigEndian.Uint16(pdu[3:]))
		if qty < 1 || qty > 2000 {
			return exception(fc, exIllegalValue)
		}
		if start+qty > len(b.coils) {
			return exception(fc, exIllegalAddress)
		}
		out := []byte{fc, byte((qty + 7) / 8)}
		out = append(out, make([]byte, (qty+7)/8)...)
		for i := 0; i < qty; i++ {
			if b.coils[start+i] {
				out[2+i/8] |= 1 << (i % 8)
			}
		}
		return out
	case fcWriteSingleCoil:
		coil, v := int(binary.BigEndian.Uint16(pdu[1:])), binary.BigEndian.Uint16(pdu[3:])
		if v != 0xFF00 && v != 0x0000 {
			return exception(fc, exIllegalValue)
		}
		if coil >= len(b.coils) {
			return exception(fc, exIllegalAddress)
		}
		b.set(coil, v == 0xFF00)
		return append([]byte(nil), pdu[:5]...)
	case fcWriteMultipleCoils:
		start, qty, count := int(binary.BigEndian.Uint16(pdu[1:])), int(binary.BigEndian.Uint16(pdu[3:])), int(pdu[5])
		if qty < 1 || qty > 1968 || count != (qty+7)/8 || len(pdu) != 6+count {
			return exception(fc, exIllegalValue)
		}
		if start+qty > len(b.coils) {
			return exception(fc, exIllegalAddress)
		}
		for i := 0; i < qty; i++ {
			b.set(start+i, pdu[6+i/8]&(1<<(i%8)) != 0)
		}
		return append([]byte(nil), pdu[:5]...)
	}
	return exception(fc, exIllegalFunction)
}

// set switches a coil and records the change; b.mu is held.
func (b *Board) set(coil int, on bool) {
	if b.coils[coil] == on {
		return
	}
	b.coils[coil] = on
	b.history = append(b.history, Change{At: time.Now(), Coil: coil, On: on})
}

// answer sends a response ADU, corrupting its CRC when injected.
func (b *Board) answer(w *os.File, addr byte, pdu []byte) {
	b.mu.Lock()
	corrupt := b.crcErrs > 0
	if corrupt {
		b.crcErrs--
	}
	delay := b.opts.ResponseDelay
	b.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	adu := append([]byte{addr}, pdu...)
	c := crc(adu)
	if corrupt {
		c ^= 0x5A5A
	}
	adu = append(adu, byte(c), byte(c>>8))
	w.Write(adu)
}

// crc is CRC-16/MODBUS: reflected polynomial 0xA001, initial 0xFFFF (Modbus
// over Serial Line v1.02 §6.2.2), computed bitwise on purpose so that it
// does not share a table with the master's implementation.
func crc(b []byte) uint16 {
	c := uint16(0xFFFF)
	for _, v := range b {
		c ^= uint16(v)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
	}
	return c
}
