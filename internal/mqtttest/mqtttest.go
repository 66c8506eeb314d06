// Package mqtttest runs an in-process mochi-mqtt broker that lets every
// client connect, publish and subscribe, for tests of MQTT peers (the
// broadcast engine, the simulated speakers) that are not about access
// control. The broker package's own tests cover the real ACL.
package mqtttest

import (
	"log/slog"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// allowAll is mochi's allow-all auth hook (hooks/auth.AllowHook), restated
// because importing hooks/auth pulls gopkg.in/yaml.v3 into go.sum for
// nothing.
type allowAll struct{ mochi.HookBase }

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (*allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }

// safeTCP closes without mochi v2.7.9's Clients.GetByListener, which
// read-locks the clients map twice and can deadlock Server.Close while a
// client detaches (see broker.safeTCP).
type safeTCP struct {
	*listeners.TCP
	server *mochi.Server
}

func (l *safeTCP) Close(listeners.CloseFn) {
	l.TCP.Close(func(id string) {
		for _, cl := range l.server.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = l.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
}

// StartBroker runs a broker on a free loopback port until the test ends
// and returns its tcp:// URL.
func StartBroker(t testing.TB) string {
	url, _ := StartServer(t)
	return url
}

// StartServer is StartBroker that also returns the mochi server, for tests
// that must put the broker into a state no client can cause (for instance
// a client dropped from its client map while still connected).
func StartServer(t testing.TB) (string, *mochi.Server) {
	t.Helper()
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := srv.AddListener(&safeTCP{TCP: l, server: srv}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return "tcp://" + l.Address(), srv
}
