package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/pion/webrtc/v4"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/web"
)

// startLive wires live speech over WHIP (web/live.go) to the broadcast
// engine. It shares the camera relay's ICE UDP mux, so all WebRTC traffic
// uses the one port webrtc.udp_port, with the same listen addresses
// (webrtc.listen_ips), loopback and NAT settings,
// and archives each live broadcast under <data_dir>/archive. See
// docs/webapp.md.
func (d *Daemon) startLive(ctx context.Context) error {
	w := d.cfg.WebRTC
	cfg := web.LiveConfig{
		Engine:             d.engine,
		ArchiveDir:         filepath.Join(d.cfg.DataDir, "archive"),
		UDPMux:             d.cameras.ICEUDPMux(),
		LoopbackCandidates: w.LoopbackCandidates,
		NAT1To1IPs:         w.NAT1To1IPs,
	}
	// The relay's ICE setup (listen addresses, NAT 1:1, timers), so WHIP
	// answers carry the same candidates as WHEP answers.
	se := d.cameras.ICESettingEngine()
	cfg.ICE = &se
	if rc, err := relayConfig(w); err == nil {
		if len(rc.STUNServers) > 0 {
			cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: rc.STUNServers})
		}
		if len(rc.TURNServers) > 0 {
			cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: rc.TURNServers, Username: rc.TURNUsername, Credential: rc.TURNCredential})
		}
	}
	live, err := d.web.EnableLive(cfg)
	if err != nil {
		return &config.Error{File: "config", Key: "webrtc", Reason: fmt.Sprintf("live speech: %v", err)}
	}
	d.closers = append(d.closers, live.Close)
	d.log.Debug("live speech ready", "ice", live.Addr().String())
	return nil
}
