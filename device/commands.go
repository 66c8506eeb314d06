package device

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/device/wire"
)

// Errors returned by Commander.
var (
	// ErrTimeout means the device did not answer before the command expired.
	ErrTimeout = errors.New("device did not reply in time")
	// ErrUnknown means no such device is provisioned.
	ErrUnknown = errors.New("unknown device")
	// ErrRejected means the device answered with an error.
	ErrRejected = errors.New("device rejected the command")
)

// Publisher sends one MQTT message.
type Publisher interface {
	Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error
}

// Commander sends commands on dev/<id>/cmd and matches replies by request
// id. Every command carries an expiry; a missing reply is ErrTimeout, never a
// hang.
type Commander struct {
	pub     Publisher
	topics  wire.Topics
	known   func(id string) bool
	timeout time.Duration

	mu      sync.Mutex
	waiting map[string]chan wire.Reply
}

// NewCommander returns a commander. timeout bounds each command and sets
// its expiry.
func NewCommander(pub Publisher, topics wire.Topics, known func(string) bool, timeout time.Duration) *Commander {
	return &Commander{pub: pub, topics: topics, known: known, timeout: timeout, waiting: map[string]chan wire.Reply{}}
}

// Send sends cmd (ID and Expires are filled in) to device id and waits for
// its reply, the command's expiry or ctx.
func (c *Commander) Send(ctx context.Context, id string, cmd wire.Command) (wire.Reply, error) {
	if !c.known(id) {
		return wire.Reply{}, fmt.Errorf("command %s to %s: %w", cmd.Op, id, ErrUnknown)
	}
	cmd.ID = "c-" + auth.RandomSecret(9)
	deadline := time.Now().Add(c.timeout)
	cmd.Expires = deadline.UnixMilli()
	if err := cmd.Validate(); err != nil {
		return wire.Reply{}, fmt.Errorf("command %s to %s: %w", cmd.Op, id, err)
	}
	payload, err := wire.Encode(cmd)
	if err != nil {
		return wire.Reply{}, err
	}
	ch := make(chan wire.Reply, 1)
	key := id + "/" + cmd.ID
	c.mu.Lock()
	c.waiting[key] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, key)
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// QoS 1, never retained: a device that reboots must not run it again.
	if err := c.pub.Publish(ctx, c.topics.Device(id, wire.SufCmd), 1, false, payload); err != nil {
		return wire.Reply{}, fmt.Errorf("command %s to %s: %w", cmd.Op, id, err)
	}
	select {
	case r := <-ch:
		if !r.OK {
			return r, fmt.Errorf("command %s to %s: %w: %s", cmd.Op, id, ErrRejected, r.Error)
		}
		return r, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return wire.Reply{}, fmt.Errorf("command %s to %s: %w", cmd.Op, id, ErrTimeout)
		}
		return wire.Reply{}, fmt.Errorf("command %s to %s: %w", cmd.Op, id, ctx.Err())
	}
}

// HandleReply delivers a reply from device id to its waiting Send. Replies
// nobody waits for (late or forged) are dropped.
func (c *Commander) HandleReply(id string, r wire.Reply) {
	c.mu.Lock()
	ch := c.waiting[id+"/"+r.ID]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r:
		default:
		}
	}
}
