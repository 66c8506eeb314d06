package whep

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/commune"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/uplink"
)

// CameraID is a village camera's id in a commune police user's camera
// list: "<village>.<camera>" (auth.ValidCameras allows no '/').
func CameraID(village, camera string) string { return village + "." + camera }

// Mount returns the commune server hook (docs/commune.md, "Extending the commune server") that serves the
// police camera path: the WHEP, ICE-server, presence and camera-list
// routes for the police role (admin too), each camera checked against the
// user's camera list, and the grid page at /commune/cameras. With no
// commune_cameras.turn_urls it mounts nothing. The handler has its own MQTT
// connection (client id "<commune.client_id>-cameras", clean session): a
// request/response path needs no persistent session and must not share the
// event link's client id.
func Mount(ctx context.Context, cfg config.Config, log *slog.Logger) func(*commune.Server) error {
	return func(s *commune.Server) error {
		secret, err := cfg.CommuneCameras.Validate()
		if err != nil {
			return err
		}
		if secret == "" {
			log.Info("commune cameras off (no commune_cameras.turn_urls)", "component", "commune-cameras")
			return nil
		}
		m := cfg.Commune
		key, err := uplink.ReadPrivateKey(m.SigningKeyFile)
		if err != nil {
			return fmt.Errorf("commune.signing_key_file: %w", err)
		}
		pass := ""
		if m.PasswordFile != "" {
			raw, err := os.ReadFile(m.PasswordFile)
			if err != nil {
				return &config.Error{Key: "commune.password_file", Reason: err.Error()}
			}
			pass = strings.TrimSpace(string(raw))
		}
		var tlsCfg *tls.Config
		if m.CAFile != "" {
			pem, err := os.ReadFile(m.CAFile)
			if err != nil {
				return &config.Error{Key: "commune.ca_file", Reason: err.Error()}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return &config.Error{Key: "commune.ca_file", Reason: "no PEM certificate"}
			}
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		}
		cc := cfg.CommuneCameras
		h, err := New(Config{Province: m.Province, Commune: m.ID, Key: key,
			BrokerURL: strings.TrimSpace(strings.Split(m.MQTTURL, ",")[0]), Username: m.Username, Password: pass,
			ClientID: m.ClientID + "-cameras", TLS: tlsCfg,
			TURNURLs: cc.TURNURLs, TURNSecret: secret, TURNTTL: cc.TURNTTL, Timeout: cc.Timeout, RelayOnly: cc.RelayOnly,
			Authorize: authorizeUser, Cameras: userCameras, Log: log})
		if err != nil {
			return err
		}
		context.AfterFunc(ctx, h.Close)
		roles := []string{commune.RolePolice}
		for _, route := range Routes {
			if route == "GET /commune/cameras" {
				s.HandlePublic(route, h)
				continue
			}
			s.Handle(route, roles, h)
		}
		log.Info("commune cameras on", "component", "commune-cameras", "turn", cc.TURNURLs, "relay_only", cc.RelayOnly)
		return nil
	}
}

// authorizeUser checks the signed-in user (the server has checked the
// role) against the camera: admin sees every camera, police those in
// their list as "<village>.<camera>".
func authorizeUser(r *http.Request, village, camera string) (string, int) {
	u, ok := commune.UserFrom(r.Context())
	if !ok {
		return "", http.StatusUnauthorized
	}
	if village != "" && !u.MayView(CameraID(village, camera)) {
		return "", http.StatusForbidden
	}
	return u.Username, 0
}

// userCameras groups a police user's camera list by village.
func userCameras(r *http.Request, _ string) []VillageCameras {
	u, _ := commune.UserFrom(r.Context())
	if u.Role != auth.RolePolice {
		return nil
	}
	idx := map[string]int{}
	var out []VillageCameras
	for _, id := range u.Cameras {
		v, c, ok := strings.Cut(id, ".")
		if !ok || v == "" || c == "" {
			continue
		}
		i, seen := idx[v]
		if !seen {
			i = len(out)
			idx[v] = i
			out = append(out, VillageCameras{Village: v})
		}
		out[i].Cameras = append(out[i].Cameras, GridCamera{ID: c})
	}
	return out
}
