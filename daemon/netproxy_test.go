package daemon_test

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// netProxy is an in-process TCP proxy between MQTT clients and the broker
// that impairs the link (DESIGN.md: no tc netem here). Each direction is
// delayed by Delay ± Jitter per chunk read, in order, as TCP delivers; a
// "lost" chunk (probability Loss) is what loss is on TCP: a retransmission,
// modelled as RTO more delay that holds back everything behind it. Freeze
// stops reading from the broker, so the client looks like a peer that
// stopped reading its socket.
type netProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	Delay  time.Duration
	Jitter time.Duration
	Loss   float64
	RTO    time.Duration
	frozen atomic.Bool

	mu    sync.Mutex
	rng   *rand.Rand
	conns []net.Conn
	wg    sync.WaitGroup
}

// startProxy listens on a free loopback port and forwards to target.
func startProxy(t *testing.T, target string, seed uint64) *netProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &netProxy{t: t, ln: ln, target: target, RTO: 200 * time.Millisecond, rng: rand.New(rand.NewPCG(seed, 7))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *netProxy) addr() string { return p.ln.Addr().String() }

func (p *netProxy) freeze(on bool) { p.frozen.Store(on) }

func (p *netProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c, false)
		go p.pipe(c, up, true)
	}
}

type chunk struct {
	data    []byte
	release time.Time
}

// pipe copies src to dst through the impairment; fromBroker marks the
// direction Freeze stops.
func (p *netProxy) pipe(dst, src net.Conn, fromBroker bool) {
	defer p.wg.Done()
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			if d := time.Until(c.release); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.data); err != nil {
				for range q {
				}
				return
			}
		}
	}()
	var last time.Time
	buf := make([]byte, 32<<10)
	for {
		for fromBroker && p.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
			if p.closed() {
				break
			}
		}
		n, err := src.Read(buf)
		if n > 0 {
			release := time.Now().Add(p.delay())
			if release.Before(last) {
				release = last // TCP delivers in order
			}
			last = release
			q <- chunk{append([]byte(nil), buf[:n]...), release}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

func (p *netProxy) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.Delay
	if p.Jitter > 0 {
		d += time.Duration(p.rng.Int64N(int64(2*p.Jitter))) - p.Jitter
	}
	if p.Loss > 0 && p.rng.Float64() < p.Loss {
		d += p.RTO
	}
	return d
}

func (p *netProxy) closed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns == nil
}

func (p *netProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
