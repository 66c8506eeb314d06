package camera

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// flushAt is the queue length at which a corked writer sends the batch
// itself, so that overlapping bursts cannot hold packets back for long.
const flushAt = 64

// maxPending bounds the packets queued while corked; beyond it a write is
// dropped, as a full socket buffer would drop it (UDP, RFC 768), and NACK or
// the next keyframe repairs it.
const maxPending = 4096

// batchConn is the ICE UDP socket with batched writes. While any viewer is
// sending a frame (cork ... uncork) the packets every peer connection
// writes (SRTP, and the odd STUN or DTLS packet) are queued, and the last
// uncork sends them all with one sendmmsg(2) per batch (x/net's
// ipv4.PacketConn.WriteBatch) instead of one sendto(2) per packet: the
// per-packet system call was the relay's largest cost (issue 16 profile).
// Uncorked writes go straight to the socket. Reads pass through.
//
// It implements pion's ice.AddrPortReaderWriter so the UDP mux keeps its
// allocation-free path.
type batchConn struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn

	mu      sync.Mutex
	corked  int
	pending []ipv4.Message
	spare   []ipv4.Message
	// held are the pool buffers of pending (and, during a flush, of the
	// batch being sent), returned to bufs after the send.
	held, spareHeld []*[]byte
	addrs           map[netip.AddrPort]*net.UDPAddr

	flushMu sync.Mutex
	bufs    sync.Pool

	batches, packets, dropped atomic.Uint64
}

func newBatchConn(c *net.UDPConn) *batchConn {
	b := &batchConn{conn: c, pc: ipv4.NewPacketConn(c), addrs: map[netip.AddrPort]*net.UDPAddr{}}
	b.bufs.New = func() any { s := make([]byte, 0, 1500); return &s }
	return b
}

// cork starts a burst: writes are queued until the matching uncork.
func (b *batchConn) cork() {
	b.mu.Lock()
	b.corked++
	b.mu.Unlock()
}

// uncork ends a burst; the last one sends everything queued.
func (b *batchConn) uncork() {
	b.mu.Lock()
	b.corked--
	flush := b.corked == 0 && len(b.pending) > 0
	b.mu.Unlock()
	if flush {
		b.flush()
	}
}

func (b *batchConn) flush() {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	batch, held := b.pending, b.held
	b.pending, b.held = b.spare[:0], b.spareHeld[:0]
	b.spare, b.spareHeld = nil, nil
	b.mu.Unlock()
	for rest := batch; len(rest) > 0; {
		n, err := b.pc.WriteBatch(rest, 0)
		if n > 0 {
			b.batches.Add(1)
			b.packets.Add(uint64(n))
		}
		if err != nil && n <= 0 {
			// The first message failed (e.g. an unreachable network for
			// that viewer); drop it and go on with the others.
			b.dropped.Add(1)
			n = 1
		}
		rest = rest[n:]
	}
	for i := range batch {
		batch[i].Buffers[0] = nil
		batch[i].Buffers = batch[i].Buffers[:0]
		batch[i].Addr = nil
	}
	for i, bp := range held {
		*bp = (*bp)[:0]
		b.bufs.Put(bp)
		held[i] = nil
	}
	b.mu.Lock()
	if b.spare == nil {
		b.spare, b.spareHeld = batch[:0], held[:0]
	}
	b.mu.Unlock()
}

// WriteToAddrPort queues b while corked, else writes it at once.
func (b *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	b.mu.Lock()
	if b.corked == 0 {
		b.mu.Unlock()
		return b.conn.WriteToUDPAddrPort(p, addr)
	}
	if len(b.pending) >= maxPending {
		b.mu.Unlock()
		b.dropped.Add(1)
		return len(p), nil
	}
	ua := b.addrs[addr]
	if ua == nil {
		if len(b.addrs) > 4096 {
			clear(b.addrs) // viewers come and go; keep the cache bounded
		}
		ua = net.UDPAddrFromAddrPort(addr)
		b.addrs[addr] = ua
	}
	bp := b.bufs.Get().(*[]byte)
	buf := append((*bp)[:0], p...)
	*bp = buf
	b.held = append(b.held, bp)
	if n := len(b.pending); n < cap(b.pending) {
		b.pending = b.pending[:n+1]
		m := &b.pending[n]
		m.Buffers = append(m.Buffers[:0], buf)
		m.Addr = ua
	} else {
		b.pending = append(b.pending, ipv4.Message{Buffers: [][]byte{buf}, Addr: ua})
	}
	full := len(b.pending) >= flushAt
	b.mu.Unlock()
	if full {
		b.flush()
	}
	return len(p), nil
}

// ReadFromAddrPort reads one datagram.
func (b *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	return b.conn.ReadFromUDPAddrPort(p)
}

// ReadFrom implements net.PacketConn.
func (b *batchConn) ReadFrom(p []byte) (int, net.Addr, error) { return b.conn.ReadFrom(p) }

// WriteTo implements net.PacketConn.
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("batch conn: not a UDP address")
	}
	return b.WriteToAddrPort(p, ua.AddrPort())
}

// Close closes the socket; queued packets are dropped.
func (b *batchConn) Close() error { return b.conn.Close() }

// LocalAddr implements net.PacketConn.
func (b *batchConn) LocalAddr() net.Addr { return b.conn.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (b *batchConn) SetDeadline(t time.Time) error { return b.conn.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (b *batchConn) SetReadDeadline(t time.Time) error { return b.conn.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (b *batchConn) SetWriteDeadline(t time.Time) error { return b.conn.SetWriteDeadline(t) }
