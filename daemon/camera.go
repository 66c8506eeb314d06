package daemon

import (
	"context"
	"fmt"
	"github.com/loalang/loalang/audit"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/loalang/loalang/camera"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web"
)

// startCameras wires the camera relay: ICE settings and limits from the
// config, the cameras of the config file overridden by those changed
// through the API (kept in bbolt), ended views to the audit trail, and the
// relay's metrics. See docs/cameras.md.
func (d *Daemon) startCameras(ctx context.Context) error {
	cfg, err := relayConfig(d.cfg.WebRTC)
	if err != nil {
		return err
	}
	cfg.OnView = func(v camera.ViewRecord) {
		detail := map[string]any{
			"session": v.SessionID, "from": v.From.UTC().Format(time.RFC3339Nano),
			"to": v.To.UTC().Format(time.RFC3339Nano), "reason": v.Reason,
		}
		if v.Substream {
			detail["substream"] = true
		}
		d.recordAudit(store.Event{Time: v.To, Actor: v.Viewer, Action: audit.CameraView, Target: v.CameraID, Detail: detail})
	}
	relay, err := camera.New(cfg, d.base)
	if err != nil {
		key := "webrtc.udp_port"
		if len(cfg.ListenIPs) > 0 && strings.Contains(err.Error(), "assign requested address") {
			key = "webrtc.listen_ips" // not an address of this host
		}
		return &config.Error{File: "config", Key: key, Reason: err.Error()}
	}
	d.cameras = relay
	d.closers = append(d.closers, relay.Close)
	if err := d.metrics.Register(relay.Collector()); err != nil {
		return fmt.Errorf("camera metrics: %w", err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := relay.Run(ctx); err != nil {
			d.log.Error("camera relay stopped", "err", err)
			d.health.Set("cameras", err) // not restartable: its parts heal themselves; a stop must not be silent
		}
	}()
	base := make([]camera.Camera, 0, len(d.cfg.Cameras))
	for _, c := range d.cfg.Cameras {
		cam := camera.Camera{
			ID: c.ID, Name: c.Name,
			// On demand unless the config says otherwise: cheap cameras and
			// 4G uplinks should not stream to nobody.
			AlwaysOn: c.OnDemand != nil && !*c.OnDemand,
		}
		// Credentials in the file's URLs are kept apart from them, as
		// for cameras added through the API (docs/cameras.md).
		cam.URL, cam.Credentials = camera.SplitKeeping(c.URL, camera.Credentials{})
		if c.SubstreamURL != "" {
			cam.SubstreamURL, cam.SubstreamCredentials = camera.SplitKeeping(c.SubstreamURL, camera.Credentials{})
		}
		base = append(base, cam)
	}
	// The registry merges the stored cameras over the file's and sets the
	// relay's list, now and after every change.
	reg, err := camera.NewRegistry(ctx, store.NewCameraStore[camera.Record](d.db), relay, base, d.base)
	if err != nil {
		return fmt.Errorf("cameras: %w", err)
	}
	if err := d.web.EnableCameras(web.CameraDeps{Relay: relay, Registry: reg}); err != nil {
		return fmt.Errorf("cameras: %w", err)
	}
	return nil
}

// relayConfig maps the webrtc section onto the relay's defaults. ICE
// servers are split by URL scheme (RFC 7064 stun:/stuns:, RFC 7065
// turn:/turns:); the TURN password is read from its file and never logged.
func relayConfig(w config.WebRTC) (camera.Config, error) {
	cfg := camera.DefaultConfig()
	cfg.UDPPort = w.UDPPort
	cfg.ICETCP = w.TCP
	cfg.LoopbackCandidates = w.LoopbackCandidates
	cfg.NAT1To1IPs = w.NAT1To1IPs
	cfg.ListenIPs = w.ListenIPs
	cfg.MaxViewers = w.MaxViewers
	cfg.MaxViewersPerCamera = w.MaxViewersPerCam
	if w.IdleClose > 0 {
		cfg.IdleClose = w.IdleClose
	}
	for i, raw := range w.ICEServers {
		u, err := url.Parse(raw)
		key := fmt.Sprintf("webrtc.ice_servers[%d]", i)
		if err != nil {
			return cfg, &config.Error{File: "config", Key: key, Reason: "not a stun: or turn: URL"}
		}
		switch strings.ToLower(u.Scheme) {
		case "stun", "stuns":
			cfg.STUNServers = append(cfg.STUNServers, raw)
		case "turn", "turns":
			cfg.TURNServers = append(cfg.TURNServers, raw)
		default:
			return cfg, &config.Error{File: "config", Key: key, Reason: fmt.Sprintf("scheme %q is not stun, stuns, turn or turns", u.Scheme)}
		}
	}
	if len(cfg.TURNServers) > 0 {
		cfg.TURNUsername = w.TURNUsername
		if w.TURNPasswordFile != "" {
			raw, err := os.ReadFile(w.TURNPasswordFile)
			if err != nil {
				return cfg, &config.Error{File: "config", Key: "webrtc.turn_password_file", Reason: err.Error()}
			}
			cfg.TURNCredential = strings.TrimSpace(string(raw))
		}
	}
	return cfg, nil
}
