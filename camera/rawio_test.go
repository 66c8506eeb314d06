package camera

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestBufferedConnReads checks the camera connection's raw reads
// (dialBuffered, rawReader): every byte arrives in order, a read deadline
// ends a read with no data, and the peer's close is io.EOF.
func TestBufferedConnReads(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, 300<<10)
	_, _ = rand.Read(want)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := dialBuffered(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}

	// Nothing sent yet: the deadline ends the read.
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with no data past the deadline: %v, want a deadline error", err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}

	go func() {
		_, _ = srv.Write(want)
		_ = srv.Close()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want the %d sent, in order", len(got), len(want))
	}
}

// TestRawSenderFamilies checks sendmmsg batches on IPv4 and IPv6 sockets:
// each datagram arrives whole, in order, from the sending socket.
func TestRawSenderFamilies(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			loop := "127.0.0.1:0"
			if network == "udp6" {
				loop = "[::1]:0"
			}
			send, err := net.ListenPacket(network, loop)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer send.Close()
			recv, err := net.ListenPacket(network, loop)
			if err != nil {
				t.Fatal(err)
			}
			defer recv.Close()
			s := newRawSender(send.(*net.UDPConn))
			to := recv.LocalAddr().(*net.UDPAddr).AddrPort()
			bufs := [][]byte{[]byte("one"), bytes.Repeat([]byte{7}, 1200), []byte("three")}
			// On IPv6 the batch is sent in two parts to the address with a
			// zone, the interface index of which is looked up once and then
			// cached.
			parts := [][][]byte{bufs}
			if network == "udp6" {
				to = netip.AddrPortFrom(to.Addr().WithZone("lo"), to.Port())
				parts = [][][]byte{bufs[:1], bufs[1:]}
			}
			for _, p := range parts {
				if n, err := s.sendBatch(p, to); err != nil || n != len(p) {
					t.Fatalf("sendBatch to %s: %d, %v", to, n, err)
				}
			}
			from := send.LocalAddr().(*net.UDPAddr).AddrPort()
			buf := make([]byte, 2048)
			for i, want := range bufs {
				_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
				m, addr, err := recv.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if !bytes.Equal(buf[:m], want) {
					t.Errorf("datagram %d: %d bytes, want %d", i, m, len(want))
				}
				if ap := addr.(*net.UDPAddr).AddrPort(); netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) != netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) {
					t.Errorf("datagram %d from %s, want %s", i, ap, from)
				}
			}
		})
	}
}
