package camera

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// flushAt is the queue length at which a corked destination's packets are
// sent at once, so that a frame burst stays a handful of batches.
const flushAt = 64

// batchConn is the ICE UDP socket with batched writes. While a viewer sends
// the frames it took from its queue it corks its own destination (the
// remote address of its selected ICE pair); the packets pion writes to that
// address meanwhile (SRTP, and any RTCP or STUN in between) are queued, and
// uncork sends them with one sendmmsg(2) per batch (rawSender) instead of
// one sendto(2) per packet: the per-packet system call was the relay's
// largest cost (issue 16 profile).
// Corking is per destination, so a viewer descheduled in the middle of a
// burst holds back only its own packets. Writes to an uncorked destination
// go straight to the socket. Reads pass through.
//
// It implements pion's ice.AddrPortReaderWriter so the UDP mux keeps its
// allocation-free path.
type batchConn struct {
	conn *net.UDPConn
	raw  *rawSender

	mu    sync.Mutex
	dests map[netip.AddrPort]*dest
	bufs  sync.Pool

	batches, packets, dropped atomic.Uint64
}

// dest is one corked destination's queue.
type dest struct {
	corked  int
	pending [][]byte
	held    []*[]byte // the pool buffers of pending
}

func newBatchConn(c *net.UDPConn) *batchConn {
	b := &batchConn{conn: c, raw: newRawSender(c), dests: map[netip.AddrPort]*dest{}}
	b.bufs.New = func() any { s := make([]byte, 0, 1500); return &s }
	return b
}

// cork starts a burst to addr: writes to it are queued until the matching
// uncork.
func (b *batchConn) cork(addr netip.AddrPort) {
	b.mu.Lock()
	d := b.dests[addr]
	if d == nil {
		d = &dest{}
		b.dests[addr] = d
	}
	d.corked++
	b.mu.Unlock()
}

// uncork ends a burst to addr and sends what was queued.
func (b *batchConn) uncork(addr netip.AddrPort) {
	b.mu.Lock()
	d := b.dests[addr]
	if d == nil {
		b.mu.Unlock()
		return
	}
	d.corked--
	var batch [][]byte
	var held []*[]byte
	if d.corked <= 0 {
		delete(b.dests, addr)
		batch, held = d.pending, d.held
	}
	b.mu.Unlock()
	b.send(batch, held, addr)
}

// send writes batch to addr with sendmmsg and returns the buffers to the
// pool.
func (b *batchConn) send(batch [][]byte, held []*[]byte, addr netip.AddrPort) {
	for rest := batch; len(rest) > 0; {
		n, err := b.raw.sendBatch(rest, addr)
		if n > 0 {
			b.batches.Add(1)
			b.packets.Add(uint64(n))
		}
		if err != nil && n <= 0 {
			// The first message failed (e.g. the viewer's network is
			// unreachable); drop it and go on, as UDP would.
			b.dropped.Add(1)
			n = 1
		}
		rest = rest[n:]
	}
	for _, bp := range held {
		*bp = (*bp)[:0]
		b.bufs.Put(bp)
	}
}

// WriteToAddrPort queues p while addr is corked, else writes it at once.
func (b *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	b.mu.Lock()
	d := b.dests[addr]
	if d == nil || d.corked == 0 {
		b.mu.Unlock()
		return b.conn.WriteToUDPAddrPort(p, addr)
	}
	bp := b.bufs.Get().(*[]byte)
	*bp = append((*bp)[:0], p...)
	d.pending = append(d.pending, *bp)
	d.held = append(d.held, bp)
	var batch [][]byte
	var held []*[]byte
	if len(d.pending) >= flushAt {
		batch, held = d.pending, d.held
		d.pending, d.held = nil, nil
	}
	b.mu.Unlock()
	b.send(batch, held, addr)
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
