package broadcast

import (
	"sort"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// deliveries is the engine's delivery accounting: for every broadcast, the
// speakers it was meant for (with whether each was online when it was
// asked for), and each speaker's latest report (dev/<id>/report) of each of
// its streams, summed into a Delivery per speaker. It decides nothing about
// zones or streams; it only learns of new streams (addStream) and of
// forgotten broadcasts (forget).
//
// Invariant, under mu: byStream[id] == l exactly when id is in l.streams
// and l's broadcast is still kept in memory; a ledger's streams are in the
// order the broadcast used them, so the last one's clock error is shown.
//
// Lock order: mu is a leaf; it is taken with arbiter.mu held (snapshots,
// new streams) but never the other way round.
type deliveries struct {
	mu       sync.Mutex
	byStream map[uint32]*ledger
}

// ledger is the delivery accounting of one broadcast; its fields are
// guarded by deliveries.mu.
type ledger struct {
	b       *bcast // the broadcast, to record it again on a final report
	members []string
	online  map[string]bool
	reports map[string]*devReports
	streams []uint32
}

func newDeliveries() *deliveries {
	return &deliveries{byStream: map[uint32]*ledger{}}
}

// newLedger opens the accounting of b, meant for members; online tells
// which of them were online when it was asked for. It is not yet shared.
func newLedger(b *bcast, members []string, online func(string) bool) *ledger {
	l := &ledger{b: b, members: members, online: make(map[string]bool, len(members)), reports: map[string]*devReports{}}
	for _, m := range members {
		l.online[m] = online(m)
	}
	return l
}

// addStream starts counting stream id for l.
func (d *deliveries) addStream(l *ledger, id uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l.streams = append(l.streams, id)
	d.byStream[id] = l
}

// forget drops l's streams: reports for them are ignored from now on.
func (d *deliveries) forget(l *ledger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range l.streams {
		if d.byStream[s] == l {
			delete(d.byStream, s)
		}
	}
}

// addMember counts speaker id as meant to hear l's broadcast (it came
// online during an emergency), unless it is counted already.
func (d *deliveries) addMember(l *ledger, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := l.reports[id]; !ok && !contains(l.members, id) {
		l.members = append(l.members, id)
	}
}

// report keeps r as speaker deviceID's latest report of its stream,
// received at now, and returns the broadcast it belongs to, or nil when
// the stream is unknown. Counts are cumulative per stream, so the latest
// report replaces the previous one.
func (d *deliveries) report(deviceID string, r wire.Report, now time.Time) *bcast {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.byStream[r.StreamID]
	if !ok {
		return nil
	}
	dr := l.reports[deviceID]
	if dr == nil {
		dr = &devReports{byStream: make([]wire.Report, 0, 1)}
		l.reports[deviceID] = dr
	}
	dr.set(r)
	dr.last = now
	return l.b
}

// summary returns the delivery of l's broadcast per speaker, sorted by id:
// every speaker it was meant for or that reported, zeros for those that
// never reported, so a missed announcement is visible.
func (d *deliveries) summary(l *ledger) []Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := append([]string(nil), l.members...)
	for id := range l.reports {
		if !contains(ids, id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	out := make([]Delivery, 0, len(ids))
	for _, id := range ids {
		dl := Delivery{ID: id, OnlineAtStart: l.online[id]}
		if dr := l.reports[id]; dr != nil {
			dl.LastReport = dr.last
			for _, sid := range l.streams {
				r, ok := dr.get(sid)
				if !ok {
					continue
				}
				dl.FramesExpected += uint64(r.Expected)
				dl.FramesPlayed += uint64(r.Played)
				dl.FramesLate += uint64(r.Late)
				dl.FramesLost += uint64(r.Lost)
				dl.ClockErrorUS = r.ClockErrorUS
			}
		}
		out = append(out, dl)
	}
	return out
}

// devReports holds one speaker's latest report of each of a broadcast's
// streams. A slice, not a map: a broadcast has one stream, two after a
// resume, and keepFinished ended broadcasts × every speaker stay in
// memory, where a map cost about 1 KB per speaker and broadcast (the
// soak's heap growth).
type devReports struct {
	byStream []wire.Report
	last     time.Time
}

// set keeps r as the latest report of its stream.
func (d *devReports) set(r wire.Report) {
	for i := range d.byStream {
		if d.byStream[i].StreamID == r.StreamID {
			d.byStream[i] = r
			return
		}
	}
	d.byStream = append(d.byStream, r)
}

// get returns the latest report of stream id.
func (d *devReports) get(id uint32) (wire.Report, bool) {
	for _, r := range d.byStream {
		if r.StreamID == id {
			return r, true
		}
	}
	return wire.Report{}, false
}
