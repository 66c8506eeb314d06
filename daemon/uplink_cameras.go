package daemon

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/pion/webrtc/v4"

	"github.com/loalang/loalang/camera"
	"github.com/loalang/loalang/uplink"
)

// wireUplinkCameras subscribes the uplink to the commune's camera requests
// (docs/commune-cameras.md). Requests that arrive before the camera relay
// is up are answered 503.
func (d *Daemon) wireUplinkCameras(topics uplink.Topics, keys uplink.Keys) {
	shared := d.cfg.Uplink.CommuneCameras
	allowed := func(id string) bool { return slices.Contains(shared, "*") || slices.Contains(shared, id) }
	d.up.camRelay = &uplinkCameraRelay{}
	d.up.cams = uplink.NewCameraService(uplink.CamerasConfig{Topics: topics, Keys: keys.Commune, Allowed: allowed},
		d.db, d.up.camRelay, d.up.client, d.base)
	d.up.client.Subscribe(topics.CameraRequests(), d.up.cams.Receive)
	d.closers = append(d.closers, func() error { d.up.cams.Wait(); return nil })
}

// uplinkCamerasReady hands the camera relay to the uplink's camera service.
func (d *Daemon) uplinkCamerasReady() {
	if d.up != nil && d.up.camRelay != nil && d.cameras != nil {
		d.up.camRelay.relay.Store(d.cameras)
	}
}

// uplinkCameraRelay adapts the camera relay to uplink.CameraRelay: the
// commune's TURN servers and credentials become the session's ICE servers,
// and relay errors become HTTP statuses as on the LAN's WHEP endpoint.
type uplinkCameraRelay struct {
	relay atomic.Pointer[camera.Relay]
}

func (u *uplinkCameraRelay) Offer(ctx context.Context, cam, offer, viewer string, ice []uplink.ICEServer) (uplink.OfferResult, error) {
	r := u.relay.Load()
	if r == nil {
		return uplink.OfferResult{}, &uplink.CameraError{Status: http.StatusServiceUnavailable, Msg: "the village's camera relay is starting"}
	}
	servers := make([]webrtc.ICEServer, 0, len(ice))
	for _, s := range ice {
		servers = append(servers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	sess, err := r.Offer(camera.WithRelayICE(ctx, servers), cam, offer, viewer)
	if err != nil {
		return uplink.OfferResult{}, &uplink.CameraError{Status: cameraStatus(err), Msg: err.Error()}
	}
	return uplink.OfferResult{Session: sess.ID, Answer: sess.AnswerSDP, Codec: sess.Codec}, nil
}

func (u *uplinkCameraRelay) Hangup(session string) error {
	r := u.relay.Load()
	if r == nil {
		return errors.New("camera relay not started")
	}
	return r.Hangup(session)
}

// cameraStatus maps the relay's errors to HTTP statuses.
func cameraStatus(err error) int {
	switch {
	case errors.Is(err, camera.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, camera.ErrBadSDP):
		return http.StatusBadRequest
	case errors.Is(err, camera.ErrCodecUnsupported):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, camera.ErrTooManyViewers), errors.Is(err, camera.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, camera.ErrCameraDown), errors.Is(err, context.DeadlineExceeded):
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}
