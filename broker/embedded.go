package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Limits shared by the embedded broker and the generated Mosquitto config, so a
// device meets the same ceilings on either.
const (
	// MaxPacketSize bounds one MQTT packet (MQTT 5 §3.1.2.11.4; mochi applies
	// it to v3 clients too). Audio frames are a few hundred bytes and commands
	// small JSON, so 1 MiB leaves ample room while stopping memory abuse.
	MaxPacketSize = 1 << 20
	// MaxQueuedMessages bounds the messages queued for one slow client
	// (about a minute of batched audio); beyond it QoS 0 messages are dropped.
	MaxQueuedMessages = 1024
	// maxInflight bounds unacknowledged QoS 1/2 messages held per broker.
	maxInflight = 1024
	// maxSessionExpiry bounds how long a persistent session is kept (seconds).
	maxSessionExpiry = 24 * 60 * 60
	// sysTopicInterval is how often mochi refreshes $SYS (seconds); nothing in
	// loalang reads $SYS, so it is refreshed rarely instead of every second.
	sysTopicInterval = 600
)

// EmbeddedConfig configures the embedded broker.
type EmbeddedConfig struct {
	// Addr is the TCP address to listen on; port 0 picks a free port, which
	// Addr() reports after Start.
	Addr string
}

// Embedded is an in-process mochi-mqtt broker that authenticates accounts and
// checks every publish, subscribe and delivery against Rules.
type Embedded struct {
	cfg    EmbeddedConfig
	log    *slog.Logger
	policy atomic.Pointer[policy]

	mu       sync.Mutex
	server   *mqtt.Server
	addr     string
	started  bool
	stopCtx  func() bool
	closed   bool
	closeErr error
}

// policy is Rules compiled for per-packet lookups by username.
type policy struct {
	accounts map[string]*compiledAccount
}

// maxCachedDecisions bounds each account's decision cache; a device uses a
// handful of topics, so this is only reached by a client probing topics.
const maxCachedDecisions = 256

// compiledAccount holds one account's hash and its grants from Rules.Grants,
// with a cache of decisions by topic: the broker checks the ACL for every
// delivery, and a village's traffic uses few topics.
type compiledAccount struct {
	hash   string
	grants []Grant

	mu    sync.RWMutex
	cache [2]map[string]bool // [0] read, [1] write
}

// allowed applies the account's grants to a topic, through the cache.
func (a *compiledAccount) allowed(topic string, write bool) bool {
	i := 0
	if write {
		i = 1
	}
	a.mu.RLock()
	v, ok := a.cache[i][topic]
	a.mu.RUnlock()
	if ok {
		return v
	}
	v = grantsAllow(a.grants, topic, write)
	a.mu.Lock()
	if a.cache[i] == nil || len(a.cache[i]) >= maxCachedDecisions {
		a.cache[i] = make(map[string]bool)
	}
	a.cache[i][topic] = v
	a.mu.Unlock()
	return v
}

// compile validates r and indexes it by username.
func compile(r Rules) (*policy, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	p := &policy{accounts: make(map[string]*compiledAccount, len(r.Accounts))}
	for _, a := range r.Accounts {
		p.accounts[a.Username] = &compiledAccount{hash: a.PasswordHash, grants: r.Grants(a)}
	}
	return p, nil
}

// NewEmbedded returns an unstarted embedded broker enforcing rules. Mochi's own
// logs go to log with component=broker.
func NewEmbedded(cfg EmbeddedConfig, rules Rules, log *slog.Logger) (*Embedded, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := compile(rules)
	if err != nil {
		return nil, fmt.Errorf("new embedded broker: %w", err)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:1883"
	}
	e := &Embedded{cfg: cfg, log: log.With("component", "broker")}
	e.policy.Store(p)
	return e, nil
}

// Start binds the listener and starts serving. The broker stops when ctx is
// cancelled or Close is called, whichever comes first.
func (e *Embedded) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return fmt.Errorf("start embedded broker: %w", ErrClosed)
	case e.started:
		return fmt.Errorf("start embedded broker: %w", ErrStarted)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start embedded broker: %w", err)
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = MaxPacketSize
	caps.MaximumClientWritesPending = MaxQueuedMessages
	caps.MaximumInflight = maxInflight
	caps.ReceiveMaximum = maxInflight
	caps.MaximumSessionExpiryInterval = maxSessionExpiry
	s := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(messageHandler{e.log.Handler()}),
		SysTopicResendInterval: sysTopicInterval,
	})
	if err := s.AddHook(&aclHook{policy: &e.policy}, nil); err != nil {
		return fmt.Errorf("start embedded broker: add hook: %w", err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: e.cfg.Addr})
	if err := s.AddListener(&safeTCP{TCP: l, server: s}); err != nil {
		return fmt.Errorf("start embedded broker: listen %s: %w", e.cfg.Addr, err)
	}
	if err := s.Serve(); err != nil {
		_ = s.Close()
		return fmt.Errorf("start embedded broker: serve: %w", err)
	}
	e.server = s
	e.addr = l.Address()
	e.started = true
	e.stopCtx = context.AfterFunc(ctx, func() { _ = e.Close() })
	e.log.Info("broker started", "addr", e.addr)
	return nil
}

// Run starts the broker and serves until ctx is cancelled; cancellation is not
// an error.
func (e *Embedded) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return e.Close()
}

// Addr returns the bound listener address ("127.0.0.1:41234"), or "" before Start.
func (e *Embedded) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr
}

// SetRules replaces the rules at runtime, e.g. after provisioning a device.
// New rules apply to the next packet of every client; clients whose account
// was removed or whose password hash changed are disconnected. Invalid rules
// are rejected and the old ones stay in force.
func (e *Embedded) SetRules(r Rules) error {
	p, err := compile(r)
	if err != nil {
		return fmt.Errorf("set broker rules: %w", err)
	}
	old := e.policy.Swap(p)
	e.mu.Lock()
	s := e.server
	e.mu.Unlock()
	if s == nil {
		return nil
	}
	for _, cl := range s.Clients.GetAll() {
		if cl.Net.Inline || cl.Closed() {
			continue
		}
		user := string(cl.Properties.Username)
		was, hadOld := old.accounts[user]
		now, ok := p.accounts[user]
		if ok && hadOld && was.hash == now.hash {
			continue
		}
		e.log.Info("client revoked", "client", cl.ID, "user", user)
		if cl.Properties.ProtocolVersion == 5 {
			_ = s.DisconnectClient(cl, packets.ErrNotAuthorized)
		} else {
			// MQTT 3.1.1 has no server DISCONNECT [MQTT-3.14]; close the connection.
			cl.Stop(packets.ErrNotAuthorized)
		}
	}
	return nil
}

// Close stops the broker, disconnecting every client. It is idempotent and safe
// to call before Start.
func (e *Embedded) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.closeErr
	}
	e.closed = true
	if e.stopCtx != nil {
		e.stopCtx()
	}
	if e.server != nil {
		if err := e.server.Close(); err != nil {
			e.closeErr = fmt.Errorf("close embedded broker: %w", err)
		}
		e.log.Info("broker stopped")
	}
	return e.closeErr
}

// aclHook is the mochi hook that authenticates CONNECTs and authorises every
// publish, subscribe and delivery from the current policy.
type aclHook struct {
	mqtt.HookBase
	policy *atomic.Pointer[policy]
}

// ID returns the hook's name in mochi's logs.
func (h *aclHook) ID() string { return "loalang-acl" }

// Provides reports the hook methods mochi must call.
func (h *aclHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate accepts a CONNECT only with a known username and the
// right password [MQTT-3.1.4-2]. A will whose topic the account may not publish
// to is refused at connect, as Mosquitto 2 does, because mochi does not check
// the will topic when it later publishes the will.
func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	acct, ok := h.policy.Load().accounts[user]
	switch {
	case !ok:
		h.Log.Info("connect refused", "reason", "unknown user", "user", user, "remote", cl.Net.Remote)
		return false
	case !pk.Connect.PasswordFlag:
		h.Log.Info("connect refused", "reason", "no password", "user", user, "remote", cl.Net.Remote)
		return false
	case !VerifyPassword(acct.hash, string(pk.Connect.Password)):
		h.Log.Info("connect refused", "reason", "bad password", "user", user, "remote", cl.Net.Remote)
		return false
	case pk.Connect.WillFlag && !grantsAllow(acct.grants, pk.Connect.WillTopic, true):
		h.Log.Info("connect refused", "reason", "will topic denied", "user", user, "topic", pk.Connect.WillTopic)
		return false
	}
	return true
}

// OnACLCheck authorises one publish (write), subscription filter or delivery
// (read) for the client's authenticated username.
func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	// Indexing with string(bytes) does not allocate.
	acct, ok := h.policy.Load().accounts[string(cl.Properties.Username)]
	if ok && acct.allowed(topic, write) {
		return true
	}
	h.Log.Debug("acl denied", "user", string(cl.Properties.Username), "client", cl.ID, "topic", topic, "write", write)
	return false
}

// messageHandler adapts mochi's logging to loalang's conventions: it names the
// records mochi leaves without a message (its listener logs every ended
// connection that way, at WARN), demotes routine disconnects and refusals the
// hook already logged to DEBUG, logs client packet errors (which close the
// client's connection) at INFO rather than WARN, and strips packet dumps, which can carry
// payloads, from "error processing packet" records.
type messageHandler struct{ slog.Handler }

// Handle forwards r after the adaptations above.
func (h messageHandler) Handle(ctx context.Context, r slog.Record) error {
	const packetErr = "error processing packet"
	if r.Message != "" && r.Message != packetErr {
		return h.Handler.Handle(ctx, r)
	}
	msg, level := r.Message, slog.LevelInfo
	if msg == "" {
		msg = "connection ended"
	}
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pk":
			return true
		case "error":
			if err, ok := a.Value.Any().(error); ok && r.Message == "" && routineDisconnect(err) {
				level = slog.LevelDebug
			}
		}
		attrs = append(attrs, a)
		return true
	})
	if !h.Handler.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, msg, r.PC)
	out.AddAttrs(attrs...)
	return h.Handler.Handle(ctx, out)
}

// routineDisconnect reports errors that end connections in normal operation or
// that the hook has already logged.
func routineDisconnect(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, packets.ErrBadUsernameOrPassword) || errors.Is(err, packets.ErrNotAuthorized)
}

// WithAttrs keeps the wrapper around the derived handler.
func (h messageHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return messageHandler{h.Handler.WithAttrs(as)}
}

// WithGroup keeps the wrapper around the derived handler.
func (h messageHandler) WithGroup(name string) slog.Handler {
	return messageHandler{h.Handler.WithGroup(name)}
}

// safeTCP is mochi's TCP listener with a shutdown that cannot deadlock.
// mochi v2.7.9's Server.Close disconnects a listener's clients through
// Clients.GetByListener, which read-locks the clients map and then calls
// Len, read-locking it again; a client detaching at that moment
// (attachClient's Clients.Delete takes the write lock) blocks both for
// ever. safeTCP lists the clients with GetAll, which locks once.
type safeTCP struct {
	*listeners.TCP
	server *mqtt.Server
}

// Close stops the listener and disconnects its clients.
func (l *safeTCP) Close(listeners.CloseFn) {
	l.TCP.Close(func(id string) {
		for _, cl := range l.server.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = l.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
}
