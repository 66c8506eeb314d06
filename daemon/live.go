package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/whip"
)

// startLive wires live speech over WHIP (package whip, served by web) to
// the broadcast engine. It shares the camera relay's ICE setup (package
// rtc: the one UDP port webrtc.udp_port, the listen addresses
// webrtc.listen_ips, loopback and NAT 1:1 settings) and its STUN and TURN
// servers, so WHIP answers carry the same candidates as WHEP answers, and
// archives each live broadcast under <data_dir>/archive. See
// docs/webapp.md.
func (d *Daemon) startLive(ctx context.Context) error {
	se := d.cameras.ICESettingEngine()
	live, err := whip.New(whip.Config{
		Engine:     d.engine,
		ArchiveDir: filepath.Join(d.cfg.DataDir, "archive"),
		ICE:        &se,
		ICEServers: d.cameras.ICEServers(),
		Audit:      d.recordAudit,
		Log:        d.base,
	})
	if err != nil {
		return &config.Error{File: "config", Key: "webrtc", Reason: fmt.Sprintf("live speech: %v", err)}
	}
	d.web.EnableLive(live)
	d.closers = append(d.closers, live.Close)
	d.log.Debug("live speech ready", "ice", d.cameras.ICEAddr().String())
	return nil
}
