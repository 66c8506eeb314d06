package bus

import "errors"

// Sentinel errors reported through Config.OnHealth; compare with errors.Is.
var (
	// ErrNotConnected reports that the client has no connection to the broker.
	ErrNotConnected = errors.New("not connected to the MQTT broker")
	// ErrNotDelivering reports a connection that is up but whose
	// subscriptions deliver nothing: the client's probe message to itself
	// did not come back.
	ErrNotDelivering = errors.New("connected, but subscriptions deliver nothing (probe to itself lost)")
	// ErrClosed ends a connection attempt interrupted by Close.
	ErrClosed = errors.New("client closed")
)
