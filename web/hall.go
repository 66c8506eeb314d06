package web

import (
	"net/http"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/hall"
	"github.com/loalang/loalang/web/api"
)

// Hall is the hall output (sound card and relay board) as the API shows it.
type Hall interface {
	Status() hall.Status
	Delivery(streamID uint32) hall.Delivery
}

type hallStatusView = api.Hall

type stepView struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// wiredView is the delivery state of a broadcast's wired zones: frames
// played by the sound card and each relay step confirmed by read-back.
type wiredView struct {
	StreamID uint32     `json:"stream_id"`
	Zones    []string   `json:"zones"`
	Played   uint32     `json:"frames_played"`
	Late     uint32     `json:"frames_late"`
	Lost     uint32     `json:"frames_lost"`
	Steps    []stepView `json:"steps"`
	Started  time.Time  `json:"started,omitzero"`
	Stopped  time.Time  `json:"stopped,omitzero"`
}

// EnableHall registers GET /api/v1/hall and adds wired-zone delivery to
// broadcast answers.
func (s *Server) EnableHall(h Hall) {
	s.hall = h
	s.Handle("GET /api/v1/hall", func(w http.ResponseWriter, r *http.Request) {
		st := h.Status()
		var v hallStatusView
		v.Sink.Configured, v.Sink.OK, v.Sink.Reason, v.Sink.Playing = st.Sink.Configured, st.Sink.OK, st.Sink.Reason, st.Sink.Playing
		b := st.Board
		v.Board.Configured, v.Board.Port, v.Board.OK, v.Board.Alarm, v.Board.Reason = b.Configured, b.Port, b.OK, b.Alarm, b.Reason
		v.Board.Since, v.Board.Faults, v.Board.Coils = b.Since, b.Faults, b.Coils
		writeJSON(w, http.StatusOK, v)
	}, auth.RoleAdmin, auth.RoleHead)
}

// wired returns the hall's delivery for each of a broadcast's streams that
// reached it.
func (s *Server) wired(streamIDs []uint32) []wiredView {
	if s.hall == nil {
		return nil
	}
	var out []wiredView
	for _, id := range streamIDs {
		d := s.hall.Delivery(id)
		if d.Started.IsZero() { // the stream did not reach the hall
			continue
		}
		v := wiredView{StreamID: d.StreamID, Zones: d.Zones, Played: d.Played, Late: d.Late, Lost: d.Lost, Started: d.Started, Stopped: d.Stopped, Steps: []stepView{}}
		for _, st := range d.Steps {
			v.Steps = append(v.Steps, stepView{st.Name, st.At})
		}
		out = append(out, v)
	}
	return out
}
