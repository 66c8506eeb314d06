package modbus

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
)

func TestCRC(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		// The CRC-16/MODBUS check value over ASCII "123456789".
		{hex.EncodeToString([]byte("123456789")), 0x4B37},
		{"", 0xFFFF},
		// Frames seen on cheap RS-485 relay boards, CRC sent low byte first.
		{"01050000ff00", 0x3A8C},
		{"010500000000", 0xCACD},
		{"010100000008", 0xCC3D},
		{"010300000001", 0x0A84},
	}
	for _, tt := range tests {
		b, _ := hex.DecodeString(tt.in)
		if got := CRC(b); got != tt.want {
			t.Errorf("CRC(%s) = 0x%04X, want 0x%04X", tt.in, got, tt.want)
		}
	}
}

func TestRequestEncode(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"read 8 coils", Request{Slave: 1, Function: FuncReadCoils, Addr: 0, Quantity: 8}, "0101000000083dcc"},
		{"coil 0 on", Request{Slave: 1, Function: FuncWriteSingleCoil, Addr: 0, Values: []bool{true}}, "010500 00ff008c3a"},
		{"coil 0 off", Request{Slave: 1, Function: FuncWriteSingleCoil, Addr: 0, Values: []bool{false}}, "0105000000 00cdca"},
		// Modbus Application Protocol v1.1b3 §6.11 example: 10 coils from 20 (0x13 is 19 zero-based)
		// with values CD 01.
		{"write 10 coils", Request{Slave: 1, Function: FuncWriteMultipleCoils, Addr: 0x13,
			Values: []bool{true, false, true, true, false, false, true, true, true, false}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				// Check the PDU bytes of the spec example and a valid CRC.
				wantPDU, _ := hex.DecodeString("010f0013000a02cd01")
				if !bytes.Equal(got[:len(got)-2], wantPDU) {
					t.Fatalf("pdu % x, want % x", got[:len(got)-2], wantPDU)
				}
				if _, err := DecodeResponse(Request{Slave: 1, Function: FuncReadCoils, Quantity: 1}, got); errors.Is(err, ErrCRC) {
					t.Fatalf("own CRC rejected: %v", err)
				}
				return
			}
			want, _ := hex.DecodeString(stripSpaces(tt.want))
			if !bytes.Equal(got, want) {
				t.Fatalf("got % x, want % x", got, want)
			}
		})
	}
}

func stripSpaces(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte(" "), nil))
}

func TestRequestEncodeInvalid(t *testing.T) {
	for _, r := range []Request{
		{Slave: 1, Function: FuncReadCoils, Quantity: 0},
		{Slave: 1, Function: FuncReadCoils, Quantity: MaxReadCoils + 1},
		{Slave: 1, Function: FuncReadCoils, Addr: 0xFFFF, Quantity: 2},
		{Slave: 1, Function: FuncWriteSingleCoil},
		{Slave: 1, Function: FuncWriteMultipleCoils},
		{Slave: 1, Function: FuncWriteMultipleCoils, Values: make([]bool, MaxWriteCoils+1)},
		{Slave: 1, Function: 0x03, Quantity: 1},
	} {
		if _, err := r.Encode(); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%+v: err %v, want ErrInvalidRequest", r, err)
		}
	}
}

func withCRC(h string) []byte {
	b, _ := hex.DecodeString(stripSpaces(h))
	return appendCRC(b)
}

func TestDecodeResponse(t *testing.T) {
	read10 := Request{Slave: 1, Function: FuncReadCoils, Addr: 0x13, Quantity: 10}
	on3 := Request{Slave: 1, Function: FuncWriteSingleCoil, Addr: 3, Values: []bool{true}}
	multi := Request{Slave: 1, Function: FuncWriteMultipleCoils, Addr: 0, Values: make([]bool, 9)}
	corrupt := withCRC("01 01 02 cd 01")
	corrupt[len(corrupt)-1] ^= 0xFF
	tests := []struct {
		name    string
		req     Request
		adu     []byte
		coils   []bool
		wantErr error
	}{
		{"read coils", read10, withCRC("01 01 02 cd 01"), []bool{true, false, true, true, false, false, true, true, true, false}, nil},
		{"read coils wrong count", read10, withCRC("01 01 01 cd"), nil, ErrMalformed},
		{"read coils extra byte", read10, withCRC("01 01 02 cd 01 00"), nil, ErrMalformed},
		{"crc error", read10, corrupt, nil, ErrCRC},
		{"other slave", read10, withCRC("02 01 02 cd 01"), nil, ErrMalformed},
		{"other function", read10, withCRC("01 02 02 cd 01"), nil, ErrMalformed},
		{"exception", read10, withCRC("01 81 02"), nil, ErrException},
		{"exception long", read10, withCRC("01 81 02 00"), nil, ErrMalformed},
		{"write single echo", on3, withCRC("01 05 00 03 ff 00"), nil, nil},
		{"write single wrong value", on3, withCRC("01 05 00 03 00 00"), nil, ErrMalformed},
		{"write single wrong addr", on3, withCRC("01 05 00 04 ff 00"), nil, ErrMalformed},
		{"write multiple echo", multi, withCRC("01 0f 00 00 00 09"), nil, nil},
		{"write multiple wrong qty", multi, withCRC("01 0f 00 00 00 08"), nil, ErrMalformed},
		{"short", read10, []byte{1, 1, 0}, nil, ErrMalformed},
		{"too long", read10, make([]byte, MaxADU+1), nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeResponse(tt.req, tt.adu)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Coils, tt.coils) {
				t.Fatalf("coils %v, want %v", r.Coils, tt.coils)
			}
		})
	}
	var ex *ExceptionError
	if _, err := DecodeResponse(read10, withCRC("01 81 02")); !errors.As(err, &ex) || ex.Code != 2 {
		t.Fatalf("exception not typed: %v", err)
	}
}

func TestExpectedLen(t *testing.T) {
	read := Request{Slave: 1, Function: FuncReadCoils, Quantity: 8}
	write := Request{Slave: 1, Function: FuncWriteSingleCoil, Values: []bool{true}}
	tests := []struct {
		req  Request
		head []byte
		need int
		ok   bool
	}{
		{read, nil, 2, false},
		{read, []byte{1, 1}, 3, false},
		{read, []byte{1, 1, 1}, 6, true},
		{read, []byte{1, 0x81}, 5, true},
		{write, []byte{1, 5}, 8, true},
		{write, []byte{1, 0x85}, 5, true},
	}
	for _, tt := range tests {
		need, ok := ExpectedLen(tt.req, tt.head)
		if need != tt.need || ok != tt.ok {
			t.Errorf("ExpectedLen(%x, % x) = %d,%v want %d,%v", tt.req.Function, tt.head, need, ok, tt.need, tt.ok)
		}
	}
}

func TestPackCoils(t *testing.T) {
	v := []bool{true, false, true, true, false, false, true, true, true, false}
	p := PackCoils(v)
	if !bytes.Equal(p, []byte{0xCD, 0x01}) {
		t.Fatalf("packed % x", p)
	}
	if got := UnpackCoils(p, len(v)); !slices.Equal(got, v) {
		t.Fatalf("unpacked %v", got)
	}
}

func TestFrameGap(t *testing.T) {
	if g := FrameGap(9600); g < 4*1e6 || g > 4.1*1e6 {
		t.Errorf("9600 baud gap %v, want about 4.01ms", g)
	}
	if g := FrameGap(115200); g != 1750*1e3 {
		t.Errorf("115200 baud gap %v, want 1.75ms", g)
	}
}
