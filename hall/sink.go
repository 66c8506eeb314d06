package hall

import (
	"context"

	"github.com/loalang/loalang/device/wire"
)

// sink is a placeholder until the sound-card sink lands.
type sink struct{}

func newSink(h *Hall, cfg SinkConfig) *sink                  { return &sink{} }
func (s *sink) run(ctx context.Context)                      { <-ctx.Done() }
func (s *sink) close()                                       {}
func (s *sink) start(ctl wire.StreamControl)                 {}
func (s *sink) frame(f wire.Frame)                           {}
func (s *sink) stop(id uint32)                               {}
func (s *sink) counts(id uint32) (played, late, lost uint32) { return 0, 0, 0 }
func (s *sink) status() SinkStatus                           { return SinkStatus{Configured: true} }
