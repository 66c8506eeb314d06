package modbus

import (
	"errors"
	"testing"
)

// FuzzDecodeResponse feeds arbitrary bytes to the RTU response parser for
// each supported function: it must never panic, and whatever it accepts must
// be self-consistent.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(byte(0), withCRC("01 01 02 cd 01"))
	f.Add(byte(0), withCRC("01 81 02"))
	f.Add(byte(1), withCRC("01 05 00 03 ff 00"))
	f.Add(byte(2), withCRC("01 0f 00 00 00 09"))
	f.Add(byte(0), []byte{})
	f.Add(byte(0), []byte{1, 1, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, sel byte, adu []byte) {
		reqs := []Request{
			{Slave: 1, Function: FuncReadCoils, Addr: 0x13, Quantity: 10},
			{Slave: 1, Function: FuncWriteSingleCoil, Addr: 3, Values: []bool{true}},
			{Slave: 1, Function: FuncWriteMultipleCoils, Addr: 0, Values: make([]bool, 9)},
		}
		req := reqs[int(sel)%len(reqs)]
		need, ok := ExpectedLen(req, adu)
		if need < 2 || need > 260 || (ok && need < 5) {
			t.Fatalf("ExpectedLen %d,%v", need, ok)
		}
		r, err := DecodeResponse(req, adu)
		if err != nil {
			if !errors.Is(err, ErrCRC) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrException) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if req.Function == FuncReadCoils && len(r.Coils) != int(req.Quantity) {
			t.Fatalf("%d coils for quantity %d", len(r.Coils), req.Quantity)
		}
		if n, ok := ExpectedLen(req, adu); !ok || n != len(adu) {
			t.Fatalf("accepted %d bytes but ExpectedLen says %d,%v", len(adu), n, ok)
		}
	})
}
