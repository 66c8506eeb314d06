package modbus

import (
	"errors"
	"fmt"
)

// Sentinel errors. Compare with errors.Is.
var (
	// ErrTimeout means the slave did not answer completely within the
	// response timeout (Modbus over Serial Line v1.02 §2.4.1).
	ErrTimeout = errors.New("modbus: response timeout")
	// ErrCRC means a response arrived whose CRC-16 did not match
	// (Modbus over Serial Line v1.02 §2.5.1.2).
	ErrCRC = errors.New("modbus: crc mismatch")
	// ErrMalformed means a response was structurally invalid: wrong slave,
	// wrong function, wrong length or an echo that does not match the request.
	ErrMalformed = errors.New("modbus: malformed response")
	// ErrException means the slave answered with an exception response
	// (Modbus Application Protocol v1.1b3 §7). The concrete error is an
	// *ExceptionError.
	ErrException = errors.New("modbus: exception response")
	// ErrInvalidRequest means the caller asked for something the protocol
	// cannot express, such as zero coils or more than 2000.
	ErrInvalidRequest = errors.New("modbus: invalid request")
)

// ExceptionError is an exception response: the function code with its high
// bit set and one exception code (Modbus Application Protocol v1.1b3 §7).
type ExceptionError struct {
	Function byte
	Code     byte
}

// Error describes the exception with its code's name.
func (e *ExceptionError) Error() string {
	return fmt.Sprintf("modbus: function 0x%02x exception 0x%02x (%s)", e.Function, e.Code, exceptionName(e.Code))
}

// Unwrap makes errors.Is(err, ErrException) true.
func (e *ExceptionError) Unwrap() error { return ErrException }

func exceptionName(c byte) string {
	switch c {
	case 1:
		return "illegal function"
	case 2:
		return "illegal data address"
	case 3:
		return "illegal data value"
	case 4:
		return "server device failure"
	case 5:
		return "acknowledge"
	case 6:
		return "server device busy"
	}
	return "unknown"
}
