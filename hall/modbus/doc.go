// Package modbus is a small Modbus RTU master for the coil functions a relay
// board needs: 0x01 Read Coils, 0x05 Write Single Coil and 0x0F Write
// Multiple Coils (Modbus Application Protocol v1.1b3 §6.1, §6.5, §6.11),
// framed as RTU ADUs with CRC-16/MODBUS (Modbus over Serial Line v1.02
// §2.5.1, §6.2.2).
//
// It works over any Port (a go.bug.st/serial port satisfies it), so the
// daemon keeps one serial library. Maintained libraries such as
// simonvetter/modbus open the serial device themselves through a different
// serial package and accept no caller-supplied io.ReadWriter, hence this
// package.
package modbus
