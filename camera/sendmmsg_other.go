//go:build !linux

package camera

import (
	"net"
	"net/netip"
)

// rawSender writes a batch one datagram at a time where sendmmsg(2) does
// not exist.
type rawSender struct{ c *net.UDPConn }

func newRawSender(c *net.UDPConn) *rawSender { return &rawSender{c} }

// sendBatch sends each of bufs to addr and returns how many were sent and
// the error that stopped it.
func (s *rawSender) sendBatch(bufs [][]byte, addr netip.AddrPort) (int, error) {
	for i, b := range bufs {
		if _, err := s.c.WriteToUDPAddrPort(b, addr); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}
