package uplink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/loalang/loalang/internal/egress"
	"github.com/loalang/loalang/store"
)

// Play is an accepted command as the daemon plays it.
type Play struct {
	CommandID string
	// Actor names the sender for the broadcast log: "province:<id>" or
	// "commune:<id>".
	Actor    string
	Priority string
	// Exactly one of Text and Media (the fetched, hash-checked file).
	Text  string
	Media []byte
	// MediaName is the media URL's last path element, for the library.
	MediaName string
	// Zones are the target's zones; empty means every zone.
	Zones []string
}

// Player starts a broadcast for an accepted command and returns its id.
type Player interface {
	Play(ctx context.Context, p Play) (broadcastID string, err error)
}

// Outcomes reported upward for a command (docs/protocol.md).
const (
	OutcomeAccepted = "accepted"
	OutcomeRefused  = "refused"
	OutcomeStarted  = "started"
	OutcomePlayed   = "played"
	OutcomeFailed   = "failed"
)

// Report is the data of a "command" event.
type Report struct {
	CommandID   string `json:"command_id"`
	Level       string `json:"level,omitempty"`
	Sender      string `json:"sender,omitempty"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
	Detail      string `json:"detail,omitempty"`
	BroadcastID string `json:"broadcast_id,omitempty"`
	State       string `json:"state,omitempty"`
	// Devices is the per-speaker delivery of a played command.
	Devices any `json:"devices,omitempty"`
}

// CommandsConfig configures the command handler.
type CommandsConfig struct {
	Topics Topics
	Keys   Keys
	// MediaMaxBytes bounds a fetched media file.
	MediaMaxBytes int64
	// MediaPolicy is the egress policy for media URLs.
	MediaPolicy egress.Policy
	Now         func() time.Time
	// Live, when set with a Player that is also a LivePlayer, plays live
	// commands; without it they are refused (reason play).
	Live *LiveReceiver
}

// LivePlayer is a Player that can also start a live broadcast for an
// accepted live command; the receiver feeds the returned sink.
type LivePlayer interface {
	PlayLive(ctx context.Context, p Play) (broadcastID string, sink LiveSink, err error)
}

// Commands verifies and plays commands from above and reports on each.
type Commands struct {
	cfg    CommandsConfig
	db     *store.DB
	outbox *Outbox
	player Player
	log    *slog.Logger
	http   *http.Client
	queue  chan []byte

	mu   sync.Mutex
	seen map[string]int
}

// playing links a broadcast to the command it plays, in the store's
// uplink_playing bucket, so the "played" report survives a restart.
type playing struct {
	CommandID string    `json:"command_id"`
	Level     string    `json:"level"`
	Sender    string    `json:"sender"`
	Started   time.Time `json:"started"`
}

// NewCommands returns a command handler; Run processes what Enqueue queues.
func NewCommands(cfg CommandsConfig, db *store.DB, outbox *Outbox, player Player, log *slog.Logger) *Commands {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MediaMaxBytes <= 0 {
		cfg.MediaMaxBytes = 20 << 20
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: cfg.MediaPolicy.Control}
	tr := &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	return &Commands{cfg: cfg, db: db, outbox: outbox, player: player, log: log.With("component", "uplink"),
		http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}, queue: make(chan []byte, 256),
		seen: map[string]int{}}
}

// Enqueue hands a received envelope to Run. It blocks while 256 are
// waiting (paho then holds back further messages) rather than drop one.
func (c *Commands) Enqueue(ctx context.Context, raw []byte) {
	select {
	case c.queue <- append([]byte(nil), raw...):
	case <-ctx.Done():
	}
}

// Run handles queued commands one at a time and prunes expired nonces
// hourly, until ctx ends.
func (c *Commands) Run(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	c.prune()
	for {
		select {
		case <-ctx.Done():
			return nil
		case raw := <-c.queue:
			c.Handle(ctx, raw)
		case <-t.C:
			c.prune()
		}
	}
}

func (c *Commands) prune() {
	err := c.db.Update(func(tx *store.Tx) error {
		_, err := tx.PruneNonces(c.cfg.Now())
		return err
	})
	if err != nil {
		c.log.Error("prune nonces", "err", err)
	}
}

// Handle verifies one envelope and, if it passes, plays it. Every outcome
// is reported through the outbox; the returned error is the refusal.
func (c *Commands) Handle(ctx context.Context, raw []byte) error {
	cmd, err := Open(raw, c.cfg.Keys)
	if err == nil {
		err = cmd.Check(c.cfg.Now(), c.cfg.Topics)
	}
	if err == nil {
		err = c.claim(cmd)
	}
	if err != nil {
		c.refuse(cmd, err)
		return err
	}
	c.report(cmd, Report{Outcome: OutcomeAccepted})
	p := Play{CommandID: cmd.ID, Actor: cmd.Level + ":" + cmd.Sender, Priority: cmd.Priority(), Text: cmd.Text, Zones: cmd.Target.Zones}
	var id string
	if cmd.Live != nil {
		if id, err = c.playLive(ctx, cmd, p); err != nil {
			c.fail(cmd, err)
			return err
		}
	} else {
		if cmd.Media != nil {
			if p.Media, err = c.fetch(ctx, *cmd.Media); err != nil {
				err = fmt.Errorf("%w: %v", ErrMedia, err)
				c.fail(cmd, err)
				return err
			}
			p.MediaName = "uplink-" + cmd.ID
		}
		if id, err = c.player.Play(ctx, p); err != nil {
			err = fmt.Errorf("%w: %v", ErrPlay, err)
			c.fail(cmd, err)
			return err
		}
	}
	// The link and the "started" report commit together.
	err = c.db.Update(func(tx *store.Tx) error {
		if err := tx.PutPlaying(id, playing{CommandID: cmd.ID, Level: cmd.Level, Sender: cmd.Sender, Started: c.cfg.Now().UTC()}); err != nil {
			return err
		}
		return c.reportTx(tx, cmd, Report{Outcome: OutcomeStarted, BroadcastID: id})
	})
	if err != nil {
		c.log.Error("uplink command started but not recorded: its played report will be missing", "command", cmd.ID, "broadcast", id, "err", err)
	}
	c.mu.Lock()
	c.seen[OutcomeStarted]++
	c.mu.Unlock()
	c.log.Info("uplink command playing", "command", cmd.ID, "level", cmd.Level, "sender", cmd.Sender, "priority", p.Priority, "broadcast", id)
	return nil
}

// playLive starts a live broadcast and registers its session with the
// receiver, which ends it on the session's end, stall or expiry.
func (c *Commands) playLive(ctx context.Context, cmd Command, p Play) (string, error) {
	lp, ok := c.player.(LivePlayer)
	if !ok || c.cfg.Live == nil {
		return "", fmt.Errorf("%w: live speech is not supported by this village", ErrPlay)
	}
	id, sink, err := lp.PlayLive(ctx, p)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPlay, err)
	}
	if err := c.cfg.Live.Start(cmd.Live.Session, sink, cmd.Expires.Sub(c.cfg.Now()), nil); err != nil {
		sink.Close()
		return "", fmt.Errorf("%w: %v", ErrPlay, err)
	}
	return id, nil
}

// claim records the nonce, refusing one seen before (a replay).
func (c *Commands) claim(cmd Command) error {
	var fresh bool
	err := c.db.Update(func(tx *store.Tx) error {
		var err error
		fresh, err = tx.ClaimNonce(cmd.NonceKey(), cmd.Expires)
		return err
	})
	if err != nil {
		return fmt.Errorf("nonce store: %w", err)
	}
	if !fresh {
		return fmt.Errorf("%w: nonce %s", ErrReplay, cmd.Nonce)
	}
	return nil
}

func (c *Commands) refuse(cmd Command, err error) {
	c.mu.Lock()
	c.seen[OutcomeRefused+":"+Code(err)]++
	c.mu.Unlock()
	c.log.Warn("uplink command refused", "command", cmd.ID, "level", cmd.Level, "sender", cmd.Sender, "err", err)
	c.report(cmd, Report{Outcome: OutcomeRefused, Reason: Code(err), Detail: err.Error()})
}

func (c *Commands) fail(cmd Command, err error) {
	c.mu.Lock()
	c.seen[OutcomeFailed+":"+Code(err)]++
	c.mu.Unlock()
	c.log.Error("uplink command failed", "command", cmd.ID, "err", err)
	c.report(cmd, Report{Outcome: OutcomeFailed, Reason: Code(err), Detail: err.Error()})
}

func (c *Commands) report(cmd Command, r Report) {
	if r.Outcome == OutcomeAccepted {
		c.mu.Lock()
		c.seen[OutcomeAccepted]++
		c.mu.Unlock()
	}
	if err := c.db.Update(func(tx *store.Tx) error { return c.reportTx(tx, cmd, r) }); err != nil {
		c.log.Error("uplink report not queued", "command", cmd.ID, "outcome", r.Outcome, "err", err)
	}
}

// reportTx appends a report for cmd inside tx.
func (c *Commands) reportTx(tx *store.Tx, cmd Command, r Report) error {
	r.CommandID, r.Level, r.Sender = cmd.ID, cmd.Level, cmd.Sender
	if len(r.Detail) > 512 {
		r.Detail = r.Detail[:512]
	}
	return c.outbox.AppendTx(tx, "command", ClassReport, r)
}

// BroadcastEnded reports a command's broadcast that reached a final state,
// with detail (why it ended, when it did not end by itself) and its
// per-speaker delivery; other broadcasts are ignored. The link to the
// command is removed in the transaction that queues the report, so the
// report is queued exactly once, across restarts too. The daemon calls it
// when it sees the broadcast ended.
func (c *Commands) BroadcastEnded(id, state, detail string, devices any) {
	var p playing
	var ok bool
	err := c.db.Update(func(tx *store.Tx) error {
		var err error
		if ok, err = tx.TakePlaying(id, &p); err != nil || !ok {
			return err
		}
		return c.reportTx(tx, Command{ID: p.CommandID, Level: p.Level, Sender: p.Sender},
			Report{Outcome: OutcomePlayed, BroadcastID: id, State: state, Detail: detail, Devices: devices})
	})
	if err != nil {
		c.log.Error("uplink played report not queued", "broadcast", id, "err", err)
		return
	}
	if ok {
		c.mu.Lock()
		c.seen[OutcomePlayed]++
		c.mu.Unlock()
	}
}

// Pending returns the ids of the broadcasts started for commands and not
// yet reported as played, from the store: those started before a restart
// are included.
func (c *Commands) Pending() []string {
	var ids []string
	err := c.db.View(func(tx *store.Tx) error {
		var err error
		ids, err = tx.PlayingIDs()
		return err
	})
	if err != nil {
		c.log.Error("uplink pending commands", "err", err)
	}
	return ids
}

// Seen counts commands by outcome ("accepted", "refused:<reason>", ...).
func (c *Commands) Seen() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.seen))
	for k, v := range c.seen {
		out[k] = v
	}
	return out
}

// fetch downloads the media, bounded by its declared size and
// MediaMaxBytes, and checks its SHA-256 before anything decodes it.
func (c *Commands) fetch(ctx context.Context, ref MediaRef) ([]byte, error) {
	if ref.Size > c.cfg.MediaMaxBytes {
		return nil, fmt.Errorf("size %d exceeds %d", ref.Size, c.cfg.MediaMaxBytes)
	}
	if err := c.cfg.MediaPolicy.CheckURL(ref.URL); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.URL, nil)
	if err != nil {
		return nil, errors.New("bad media url")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may carry a token
		}
		return nil, fmt.Errorf("get %s: %w", egress.Redact(ref.URL), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %d", egress.Redact(ref.URL), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, ref.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", egress.Redact(ref.URL), err)
	}
	if int64(len(body)) != ref.Size {
		return nil, fmt.Errorf("got %d bytes, the command says %d", len(body), ref.Size)
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, errors.New("sha256 mismatch")
	}
	return body, nil
}
