package daemon

import (
	"context"
	"time"

	"github.com/loalang/loalang/broker"
)

// RestartBroker closes the embedded broker, waits down, and starts a new
// one on the same address with the same rules: what its clients see when
// the broker crashes and systemd restarts it.
func (d *Daemon) RestartBroker(down time.Duration) error {
	addr := d.broker.Addr()
	if err := d.broker.Close(); err != nil {
		return err
	}
	time.Sleep(down)
	emb, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: addr}, d.brokerRules, d.base)
	if err != nil {
		return err
	}
	if err := emb.Start(context.Background()); err != nil {
		return err
	}
	d.broker = emb
	return nil
}

// Healthy reports whether no component is down (what /healthz says).
func (d *Daemon) Healthy() bool { return len(d.health.Problems()) == 0 }
