package camera

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"unsafe"
)

// rtspReadBuffer is the size of a camera connection's read buffer: a
// 2 Mbit/s 1080p frame is about 10 KiB, a keyframe several times that.
const rtspReadBuffer = 64 << 10

// bufferedConn reads a camera's RTSP TCP connection in reads of up to
// rtspReadBuffer bytes. gortsplib reads through a 4 KiB bufio.Reader and
// reads each interleaved RTP packet's payload with its own call, so a frame
// took a read(2) for every two or three packets; with this buffer a frame
// that has arrived is taken in one. Writes, deadlines and Close go to the
// connection itself.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// rawReader reads a non-blocking socket with read(2) issued as a raw
// system call, waiting for data in the netpoller (and so honouring read
// deadlines) when there is none.
//
// A system call made the usual way wakes Go's sysmon thread whenever the
// whole process was idle, and sysmon then polls every 20 µs for at least a
// millisecond. A relay wakes for every frame of every camera, so that was
// over a thousand extra thread wake-ups a second for 20 cameras (issue 16
// profile). A read on a non-blocking socket never sleeps, so there is
// nothing for sysmon to take over.
type rawReader struct {
	rc syscall.RawConn
}

func (r rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			if e == syscall.EINTR {
				continue
			}
			n, errno = int(m), e
			return e != syscall.EAGAIN
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, fmt.Errorf("read camera connection: %w", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// dialBuffered is gortsplib.Client.DialContext for camera sessions: a TCP
// dial (RFC 2326 §10.12 interleaving runs over it) wrapped in a
// bufferedConn.
func dialBuffered(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("dial camera: %w", err)
	}
	var src io.Reader = c
	if tc, ok := c.(*net.TCPConn); ok {
		rc, err := tc.SyscallConn()
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("dial camera: %w", err)
		}
		src = rawReader{rc}
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(src, rtspReadBuffer)}, nil
}
