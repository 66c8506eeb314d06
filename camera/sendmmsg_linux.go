package camera

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2); Go pads it as C does (64
// bytes on 64-bit platforms, 32 on 32-bit ones).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// mmsgScratch is one send's system-call arguments, pooled so a batch
// allocates nothing.
type mmsgScratch struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	addr unix.RawSockaddrInet6
}

// rawSender writes batches of datagrams on a non-blocking UDP socket with
// sendmmsg(2) issued as a raw system call.
//
// A batch to a loopback or veth peer takes tens of microseconds in the
// kernel, because the receiver's path runs in the sender's context. Go's
// scheduler hands the processor of a goroutine in a system call longer than
// 20 µs to another thread (sysmon's retake), and the thread that made the
// call then has to get a processor back: two thread wake-ups per frame and
// viewer, which on these paravirtualised machines cost more than the send
// itself (issue 16 profile). The socket is non-blocking, so the call never
// sleeps; when the send buffer is full it returns EAGAIN and the batch waits
// for writability in the netpoller like any other write.
type rawSender struct {
	rc    syscall.RawConn
	err   error // from SyscallConn
	inet6 bool  // the socket is AF_INET6: IPv4 peers are written v4-mapped
	pool  sync.Pool
	// zones caches the interface index of each IPv6 zone seen, so that a
	// link-local viewer's batches do not look the interface up every time.
	zones sync.Map // string → uint32
}

// newRawSender returns c's sender. The socket's family is that of its
// local address (rtc.OpenUDPMux opens "udp4" sockets).
func newRawSender(c *net.UDPConn) *rawSender {
	s := &rawSender{inet6: c.LocalAddr().(*net.UDPAddr).IP.To4() == nil}
	// SyscallConn fails only on a nil connection; the error is then
	// returned by every send.
	s.rc, s.err = c.SyscallConn()
	s.pool.New = func() any { return &mmsgScratch{} }
	return s
}

// sendBatch sends each of bufs to addr and returns how many datagrams the
// kernel took (from the start of bufs) and the error that stopped it.
func (s *rawSender) sendBatch(bufs [][]byte, addr netip.AddrPort) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	sc := s.pool.Get().(*mmsgScratch)
	defer s.pool.Put(sc)
	namelen, err := s.putAddr(&sc.addr, addr)
	if err != nil {
		return 0, err
	}
	sc.hdrs, sc.iovs = resize(sc.hdrs, len(bufs)), resize(sc.iovs, len(bufs))
	for i, b := range bufs {
		iov := &sc.iovs[i]
		if len(b) > 0 {
			iov.Base = &b[0]
		}
		iov.SetLen(len(b))
		h := &sc.hdrs[i].hdr
		h.Iov, h.Iovlen = iov, 1
		h.Name, h.Namelen = (*byte)(unsafe.Pointer(&sc.addr)), namelen
	}
	var sent int
	var errno syscall.Errno
	err = s.rc.Write(func(fd uintptr) bool {
		r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&sc.hdrs[0])), uintptr(len(bufs)), unix.MSG_DONTWAIT, 0, 0)
		sent, errno = int(r), e
		return e != unix.EAGAIN
	})
	runtime.KeepAlive(bufs)
	clear(sc.iovs) // drop the references to bufs before pooling
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	}
	return sent, nil
}

// resize returns s with length n and every element zero.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// putAddr writes addr into sa in the socket's family and returns its length.
func (s *rawSender) putAddr(sa *unix.RawSockaddrInet6, addr netip.AddrPort) (uint32, error) {
	ip := addr.Addr()
	port := addr.Port()
	if !s.inet6 {
		if !ip.Unmap().Is4() {
			return 0, errors.New("IPv6 destination on an IPv4 socket")
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], port)
		return unix.SizeofSockaddrInet4, nil
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	if z := ip.Zone(); z != "" {
		idx, ok := s.zones.Load(z)
		if !ok {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return 0, fmt.Errorf("zone %s: %w", z, err)
			}
			idx, _ = s.zones.LoadOrStore(z, uint32(ifi.Index))
		}
		sa.Scope_id = idx.(uint32)
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
	return unix.SizeofSockaddrInet6, nil
}
