package modbus

import (
	"encoding/binary"
	"fmt"
)

// Function codes used here (Modbus Application Protocol v1.1b3 §5.1).
const (
	FuncReadCoils          byte = 0x01
	FuncWriteSingleCoil    byte = 0x05
	FuncWriteMultipleCoils byte = 0x0F
)

// Protocol limits (Modbus Application Protocol v1.1b3 §6.1, §6.11).
const (
	// MaxReadCoils is the largest quantity one Read Coils request may ask for.
	MaxReadCoils = 2000
	// MaxWriteCoils is the largest quantity one Write Multiple Coils request
	// may carry.
	MaxWriteCoils = 1968
	// MaxADU is the largest RTU frame: 256 bytes (Modbus over Serial Line
	// v1.02 §2.5.1).
	MaxADU = 256
)

// exceptionBit marks an exception response's function code (Modbus
// Application Protocol v1.1b3 §7).
const exceptionBit = 0x80

// Request is one master request for a coil function.
type Request struct {
	// Slave is the server address, 1–247; 0 is broadcast, which gets no
	// reply (Modbus over Serial Line v1.02 §2.2).
	Slave    byte
	Function byte
	// Addr is the zero-based address of the first coil.
	Addr uint16
	// Quantity is the number of coils to read (FuncReadCoils only).
	Quantity uint16
	// Values are the coils to write: one for FuncWriteSingleCoil, one or
	// more for FuncWriteMultipleCoils.
	Values []bool
}

// Encode returns the RTU ADU of the request: address, PDU, CRC.
func (r Request) Encode() ([]byte, error) {
	b := make([]byte, 0, 9+len(r.Values)/8+1)
	b = append(b, r.Slave, r.Function)
	switch r.Function {
	case FuncReadCoils:
		// §6.1: starting address, quantity 1–2000.
		if r.Quantity < 1 || r.Quantity > MaxReadCoils || int(r.Addr)+int(r.Quantity) > 0x10000 {
			return nil, fmt.Errorf("%w: read %d coils at %d", ErrInvalidRequest, r.Quantity, r.Addr)
		}
		b = binary.BigEndian.AppendUint16(b, r.Addr)
		b = binary.BigEndian.AppendUint16(b, r.Quantity)
	case FuncWriteSingleCoil:
		// §6.5: 0xFF00 requests ON, 0x0000 requests OFF.
		if len(r.Values) != 1 {
			return nil, fmt.Errorf("%w: write single coil with %d values", ErrInvalidRequest, len(r.Values))
		}
		b = binary.BigEndian.AppendUint16(b, r.Addr)
		b = binary.BigEndian.AppendUint16(b, coilValue(r.Values[0]))
	case FuncWriteMultipleCoils:
		// §6.11: address, quantity 1–1968, byte count, packed coils LSB first.
		n := len(r.Values)
		if n < 1 || n > MaxWriteCoils || int(r.Addr)+n > 0x10000 {
			return nil, fmt.Errorf("%w: write %d coils at %d", ErrInvalidRequest, n, r.Addr)
		}
		b = binary.BigEndian.AppendUint16(b, r.Addr)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		packed := PackCoils(r.Values)
		b = append(b, byte(len(packed)))
		b = append(b, packed...)
	default:
		return nil, fmt.Errorf("%w: function 0x%02x not supported", ErrInvalidRequest, r.Function)
	}
	return appendCRC(b), nil
}

func coilValue(on bool) uint16 {
	if on {
		return 0xFF00
	}
	return 0x0000
}

// PackCoils packs coil states eight to a byte, the first coil in the least
// significant bit, unused high bits zero (Modbus Application Protocol
// v1.1b3 §6.1, §6.11).
func PackCoils(v []bool) []byte {
	out := make([]byte, (len(v)+7)/8)
	for i, on := range v {
		if on {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

// UnpackCoils is the inverse of PackCoils for n coils. It reads only as many
// bytes as n needs; the caller checks the length.
func UnpackCoils(b []byte, n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = b[i/8]&(1<<(i%8)) != 0
	}
	return out
}

// ExpectedLen returns the total length of the response ADU to req, judged
// from the first bytes received so far (head). ok is false while head is too
// short to tell; the caller then reads at least need bytes before asking
// again.
func ExpectedLen(req Request, head []byte) (need int, ok bool) {
	if len(head) < 2 {
		return 2, false
	}
	if head[1] == req.Function|exceptionBit {
		return 5, true // address, function, exception code, CRC
	}
	switch req.Function {
	case FuncReadCoils:
		if len(head) < 3 {
			return 3, false
		}
		return 5 + int(head[2]), true // address, function, count, data, CRC
	default:
		return 8, true // echo of address and value or quantity
	}
}

// Response is a decoded, validated response.
type Response struct {
	// Coils holds the coils read by FuncReadCoils, Quantity of them.
	Coils []bool
}

// DecodeResponse validates a complete response ADU against the request that
// caused it: CRC, slave address, function code, length and (for writes) the
// echoed fields (Modbus Application Protocol v1.1b3 §6.1, §6.5, §6.11, §7).
// It never panics on any input. Failures wrap ErrCRC, ErrMalformed or
// ErrException (an *ExceptionError).
func DecodeResponse(req Request, adu []byte) (Response, error) {
	if len(adu) < 5 {
		return Response{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(adu))
	}
	if len(adu) > MaxADU {
		return Response{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(adu), MaxADU)
	}
	body := adu[:len(adu)-2]
	if got, want := binary.LittleEndian.Uint16(adu[len(adu)-2:]), CRC(body); got != want {
		return Response{}, fmt.Errorf("%w: got 0x%04x want 0x%04x", ErrCRC, got, want)
	}
	if body[0] != req.Slave {
		return Response{}, fmt.Errorf("%w: slave %d answered, asked %d", ErrMalformed, body[0], req.Slave)
	}
	pdu := body[1:]
	switch pdu[0] {
	case req.Function | exceptionBit:
		if len(pdu) != 2 {
			return Response{}, fmt.Errorf("%w: exception of %d bytes", ErrMalformed, len(pdu))
		}
		return Response{}, &ExceptionError{Function: req.Function, Code: pdu[1]}
	case req.Function:
	default:
		return Response{}, fmt.Errorf("%w: function 0x%02x answered, asked 0x%02x", ErrMalformed, pdu[0], req.Function)
	}
	switch req.Function {
	case FuncReadCoils:
		count := int(pdu[1])
		if count != (int(req.Quantity)+7)/8 || len(pdu) != 2+count {
			return Response{}, fmt.Errorf("%w: read coils byte count %d for %d coils in %d bytes", ErrMalformed, count, req.Quantity, len(pdu))
		}
		return Response{Coils: UnpackCoils(pdu[2:], int(req.Quantity))}, nil
	case FuncWriteSingleCoil:
		if len(pdu) != 5 || len(req.Values) != 1 ||
			binary.BigEndian.Uint16(pdu[1:]) != req.Addr ||
			binary.BigEndian.Uint16(pdu[3:]) != coilValue(req.Values[0]) {
			return Response{}, fmt.Errorf("%w: write single coil echo mismatch", ErrMalformed)
		}
		return Response{}, nil
	case FuncWriteMultipleCoils:
		if len(pdu) != 5 ||
			binary.BigEndian.Uint16(pdu[1:]) != req.Addr ||
			int(binary.BigEndian.Uint16(pdu[3:])) != len(req.Values) {
			return Response{}, fmt.Errorf("%w: write multiple coils echo mismatch", ErrMalformed)
		}
		return Response{}, nil
	}
	return Response{}, fmt.Errorf("%w: function 0x%02x not supported", ErrInvalidRequest, req.Function)
}
