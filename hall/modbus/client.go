package modbus

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Port is the serial line the client talks over. A go.bug.st/serial Port
// satisfies it. SetReadTimeout must make Read return n=0, err=nil when no
// byte arrived in time, as go.bug.st/serial does.
type Port interface {
	io.ReadWriter
	SetReadTimeout(t time.Duration) error
	ResetInputBuffer() error
}

// Client is a Modbus RTU master for one slave on one port. It is not safe
// for concurrent use: a serial line carries one transaction at a time
// (Modbus over Serial Line v1.02 §2.4).
type Client struct {
	port    Port
	slave   byte
	timeout time.Duration
	gap     time.Duration
	last    time.Time
}

// NewClient returns a master for slave on port. baud sets the silent
// interval kept between frames; timeout bounds each response.
func NewClient(port Port, slave byte, baud int, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 300 * time.Millisecond
	}
	return &Client{port: port, slave: slave, timeout: timeout, gap: FrameGap(baud)}
}

// FrameGap is the silent interval of 3.5 character times that separates RTU
// frames, with 11 bits per character; above 19200 baud it is fixed at
// 1.75 ms (Modbus over Serial Line v1.02 §2.5.1.1).
func FrameGap(baud int) time.Duration {
	if baud <= 0 || baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(int64(time.Second) * 11 * 7 / 2 / int64(baud))
}

// ReadCoils reads qty coils starting at addr (function 0x01).
func (c *Client) ReadCoils(ctx context.Context, addr, qty uint16) ([]bool, error) {
	r, err := c.do(ctx, Request{Slave: c.slave, Function: FuncReadCoils, Addr: addr, Quantity: qty})
	if err != nil {
		return nil, fmt.Errorf("read coils %d+%d: %w", addr, qty, err)
	}
	return r.Coils, nil
}

// WriteCoil switches one coil (function 0x05).
func (c *Client) WriteCoil(ctx context.Context, addr uint16, on bool) error {
	if _, err := c.do(ctx, Request{Slave: c.slave, Function: FuncWriteSingleCoil, Addr: addr, Values: []bool{on}}); err != nil {
		return fmt.Errorf("write coil %d: %w", addr, err)
	}
	return nil
}

// WriteCoils switches consecutive coils starting at addr (function 0x0F).
func (c *Client) WriteCoils(ctx context.Context, addr uint16, values []bool) error {
	if _, err := c.do(ctx, Request{Slave: c.slave, Function: FuncWriteMultipleCoils, Addr: addr, Values: values}); err != nil {
		return fmt.Errorf("write coils %d+%d: %w", addr, len(values), err)
	}
	return nil
}

// readSlice bounds one blocking Read so cancellation is noticed quickly.
const readSlice = 50 * time.Millisecond

func (c *Client) do(ctx context.Context, req Request) (Response, error) {
	adu, err := req.Encode()
	if err != nil {
		return Response{}, err
	}
	if wait := c.gap - time.Since(c.last); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Response{}, ctx.Err()
		case <-t.C:
		}
	}
	defer func() { c.last = time.Now() }()
	// Stale bytes of an earlier, timed-out answer would be read as this
	// one's; drop them.
	if err := c.port.ResetInputBuffer(); err != nil {
		return Response{}, fmt.Errorf("flush input: %w", err)
	}
	if _, err := c.port.Write(adu); err != nil {
		return Response{}, fmt.Errorf("write request: %w", err)
	}
	deadline := time.Now().Add(c.timeout)
	buf := make([]byte, 0, MaxADU)
	var tmp [MaxADU]byte
	need := 2
	for {
		if n, ok := ExpectedLen(req, buf); ok {
			need = n
			if len(buf) >= need {
				return DecodeResponse(req, buf[:need])
			}
		} else {
			need = n
		}
		if err := ctx.Err(); err != nil {
			return Response{}, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return Response{}, fmt.Errorf("%w after %v with %d of %d bytes", ErrTimeout, c.timeout, len(buf), need)
		}
		if err := c.port.SetReadTimeout(min(left, readSlice)); err != nil {
			return Response{}, fmt.Errorf("set read timeout: %w", err)
		}
		want := min(need-len(buf), MaxADU-len(buf))
		if want <= 0 {
			return Response{}, fmt.Errorf("%w: response longer than %d bytes", ErrMalformed, MaxADU)
		}
		n, err := c.port.Read(tmp[:want])
		if err != nil {
			return Response{}, fmt.Errorf("read response: %w", err)
		}
		buf = append(buf, tmp[:n]...)
	}
}
