package daemon

import (
	"testing"
	"time"
)

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
