package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/loalang/loalang/broker"
	"github.com/loalang/loalang/web"
)

// SetAuditCheckEvery shortens the audit check for a test and restores it
// when the test ends.
func SetAuditCheckEvery(d time.Duration) (restore func()) {
	old := auditCheckEvery
	auditCheckEvery = d
	return func() { auditCheckEvery = old }
}

// Routes lists the web server's routes for the access-matrix test.
func (d *Daemon) Routes() []web.Route { return d.web.Routes() }

// SetDiskCheckEvery shortens the disk monitor's interval for a test and
// returns a function that restores it.
func SetDiskCheckEvery(d time.Duration) (restore func()) {
	old := diskCheckEvery
	diskCheckEvery = d
	return func() { diskCheckEvery = old }
}

// SetMQTTProbeInterval shortens the MQTT probe for daemons started by the
// calling test, restoring it when the test ends. Tests using it must not
// run in parallel with other daemon tests.
func SetMQTTProbeInterval(t testing.TB, d time.Duration) {
	old := mqttProbeInterval
	mqttProbeInterval = d
	t.Cleanup(func() { mqttProbeInterval = old })
}

// MQTTIdentity returns the daemon's MQTT username, password and client id,
// so a test can connect as the controller itself.
func MQTTIdentity(d *Daemon) (user, pass, clientID string) {
	return d.busCfg.Username, d.busCfg.Password, d.busCfg.ClientID
}

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
