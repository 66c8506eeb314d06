package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Limits shared by the embedded broker and the generated Mosquitto config, so a
// device meets the same ceilings on either.
const (
	// MaxPacketSize bounds one MQTT packet (MQTT 5 §3.1.2.11.4; mochi applies
	// it to v3 clients too). The largest message of the protocol is a full
	// audio frame (wire.MaxFramePayload, 63,874 bytes) on the longest topic,
	// 64,031 bytes as a PUBLISH; everything else is at most 8 KiB of JSON.
	// On Mosquitto, where per-topic sizes cannot be enforced, this is also
	// the ceiling of each of a device's few retained messages.
	MaxPacketSize = 64 << 10
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

// compiledAccount holds one account's hash, client id and grants from
// Rules.Grants, with a cache of decisions by topic: the broker checks the ACL
// for every delivery (mochi calls OnACLCheck once per subscriber of every
// message, 16,700 times a second for 200 speakers in 5 zones, 83,000 for
// 1,000), and a village's traffic uses few topics.
//
// The caches are immutable maps behind atomic pointers, replaced whole
// (copy on write) when a topic is first seen, so the per-delivery path
// takes no lock and allocates nothing. In front of the read cache sits the
// account's last read decision: mochi passes the same topic string to the
// check of every subscriber of a message, and a speaker mostly receives
// one zone's audio, so the usual check is one atomic load and a string
// comparison of identical pointers, with no hashing. (CPU profiles of
// loalangd: with a read-write mutex and one map the hook was 3.6 % of its
// CPU at 200 speakers and 6.4 % at 1,000.)
type compiledAccount struct {
	hash     string
	clientID string
	grants   []Grant
	// readPrefix and writePrefix, when set, are the P of a grant "P#"
	// (P ending in "/", no wildcard) that allows every topic under P: for
	// writes only if that grant is also the most permissive (retain, no
	// size bound). Such topics skip the caches: the daemon's service
	// account reads every device's status, heartbeat, clock and report
	// topics, far more than maxCachedDecisions, and caching them made its
	// cache start again and be copied on nearly every delivery.
	readPrefix, writePrefix string

	mu       sync.Mutex // serialises cache replacement only
	lastRead atomic.Pointer[readDecision]
	reads    atomic.Pointer[map[string]*readDecision]
	writes   atomic.Pointer[map[string]writeRule]
}

// readDecision is a cached read decision; entries are never modified, so
// lastRead may point at one without copying it.
type readDecision struct {
	topic string
	ok    bool
}

// allowed applies the account's grants to a topic, through the cache.
func (a *compiledAccount) allowed(topic string, write bool) bool {
	if write {
		return a.writeRule(topic).ok
	}
	if a.readPrefix != "" && strings.HasPrefix(topic, a.readPrefix) {
		return true
	}
	if l := a.lastRead.Load(); l != nil && l.topic == topic {
		return l.ok
	}
	if m := a.reads.Load(); m != nil {
		if d, ok := (*m)[topic]; ok {
			a.lastRead.Store(d)
			return d.ok
		}
	}
	d := &readDecision{topic: topic, ok: grantsAllow(a.grants, topic, false)}
	cacheInsert(&a.mu, &a.reads, topic, d)
	a.lastRead.Store(d)
	return d.ok
}

// writeRule returns what the account may publish on topic, through the cache.
func (a *compiledAccount) writeRule(topic string) writeRule {
	if a.writePrefix != "" && strings.HasPrefix(topic, a.writePrefix) && !strings.ContainsAny(topic, "+#") {
		return writeRule{ok: true, retain: true}
	}
	if m := a.writes.Load(); m != nil {
		if w, ok := (*m)[topic]; ok {
			return w
		}
	}
	w := writeRuleOf(a.grants, topic)
	cacheInsert(&a.mu, &a.writes, topic, w)
	return w
}

// cacheInsert publishes a copy of *p with topic → v added. A full cache
// (a client probing topics) starts again empty, so it stays bounded.
func cacheInsert[V any](mu *sync.Mutex, p *atomic.Pointer[map[string]V], topic string, v V) {
	mu.Lock()
	defer mu.Unlock()
	var next map[string]V
	if old := p.Load(); old != nil && len(*old) < maxCachedDecisions {
		next = make(map[string]V, len(*old)+1)
		for k, x := range *old {
			next[k] = x
		}
	} else {
		next = make(map[string]V, 8)
	}
	next[topic] = v
	p.Store(&next)
}

// compile validates r and indexes it by username.
func compile(r Rules) (*policy, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	p := &policy{accounts: make(map[string]*compiledAccount, len(r.Accounts))}
	for _, a := range r.Accounts {
		ca := &compiledAccount{hash: a.PasswordHash, clientID: a.clientID(), grants: r.Grants(a)}
		for _, g := range ca.grants {
			prefix, ok := strings.CutSuffix(g.Filter, "#")
			if !ok || !strings.HasSuffix(prefix, "/") || strings.ContainsAny(prefix, "+#") {
				continue
			}
			if g.Access&AccessRead != 0 && ca.readPrefix == "" {
				ca.readPrefix = prefix
			}
			if g.Access&AccessWrite != 0 && g.Retain && g.MaxPayload == 0 && ca.writePrefix == "" {
				ca.writePrefix = prefix
			}
		}
		p.accounts[a.Username] = ca
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
	if err := s.AddHook(&aclHook{policy: &e.policy, server: s}, nil); err != nil {
		return fmt.Errorf("start embedded broker: add hook: %w", err)
	}
	l := &tcpListener{id: "tcp", address: e.cfg.Addr, server: s}
	if err := s.AddListener(l); err != nil {
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

// Stats are the embedded broker's traffic counters since it started, read
// from mochi's live counters (the figures its $SYS topics publish).
type Stats struct {
	// MessagesReceived counts PUBLISH packets received from clients.
	MessagesReceived int64
	// MessagesSent counts PUBLISH packets written to subscribers.
	MessagesSent int64
	// MessagesDropped counts messages dropped for a subscriber whose
	// queue was full.
	MessagesDropped int64
	// PacketsReceived and PacketsSent count MQTT packets of every type.
	PacketsReceived int64
	PacketsSent     int64
	// ClientsConnected is the number of clients connected now.
	ClientsConnected int64
}

// Stats returns the broker's counters; all zero before Start.
func (e *Embedded) Stats() Stats {
	e.mu.Lock()
	s := e.server
	e.mu.Unlock()
	if s == nil {
		return Stats{}
	}
	i := s.Info
	return Stats{
		MessagesReceived: atomic.LoadInt64(&i.MessagesReceived),
		MessagesSent:     atomic.LoadInt64(&i.MessagesSent),
		MessagesDropped:  atomic.LoadInt64(&i.MessagesDropped),
		PacketsReceived:  atomic.LoadInt64(&i.PacketsReceived),
		PacketsSent:      atomic.LoadInt64(&i.PacketsSent),
		ClientsConnected: atomic.LoadInt64(&i.ClientsConnected),
	}
}

// SetRules replaces the rules at runtime, e.g. after provisioning a device.
// New rules apply to the next packet of every client; clients whose account
// was removed, or whose password hash or client id changed, are disconnected. Invalid rules
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
		if ok && hadOld && was.hash == now.hash && was.clientID == now.clientID {
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

// aclHook is the mochi hook that authenticates CONNECTs (credentials and
// client id) and authorises every publish (topic, size, retain), subscribe
// and delivery from the current policy.
type aclHook struct {
	mqtt.HookBase
	policy *atomic.Pointer[policy]
	server *mqtt.Server
}

// ID returns the hook's name in mochi's logs.
func (h *aclHook) ID() string { return "loalang-acl" }

// Provides reports the hook methods mochi must call.
func (h *aclHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish || b == mqtt.OnSessionEstablish
}

// takeoverWait bounds how long a new connection waits for the clean session
// it replaces to be torn down.
const takeoverWait = 2 * time.Second

// OnSessionEstablish lets the clean session a new connection replaces finish
// its teardown first. mochi v2.7.9 races here: the old connection's
// goroutine can decide it was not taken over, then delete the client id from
// the client map after the new connection was added, and unsubscribe the id's
// filters. The new client stays connected, answers pings, and receives
// nothing until it reconnects: the "deaf controller" of the takeover report,
// which any legitimate quick reconnect can also trigger. Stopping the old
// connection here and waiting until its goroutine has removed it makes the
// takeover sequential. Persistent sessions are not removed on disconnect,
// so for them the wait ends at once and mochi inherits the session as usual.
func (h *aclHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	old, ok := h.server.Clients.Get(cl.ID)
	if !ok || cl.Net.Inline {
		return
	}
	// The same test mochi uses to decide that a session ends with its connection.
	ends := (old.Properties.ProtocolVersion == 5 && old.Properties.Props.SessionExpiryInterval == 0) ||
		(old.Properties.ProtocolVersion < 5 && old.Properties.Clean)
	if !ends {
		return
	}
	_ = h.server.DisconnectClient(old, packets.ErrSessionTakenOver) // [MQTT-3.1.4-3]; v5 clients get a DISCONNECT 0x8E
	deadline := time.Now().Add(takeoverWait)
	for time.Now().Before(deadline) {
		if cur, ok := h.server.Clients.Get(cl.ID); !ok || cur != old {
			return
		}
		time.Sleep(time.Millisecond) // the old goroutine needs only a few scheduler rounds
	}
	h.Log.Warn("session takeover: old session not torn down in time", "client", cl.ID)
}

// OnConnectAuthenticate accepts a CONNECT only with a known username, the
// right password [MQTT-3.1.4-2] and the account's own client id, so that no
// identity can take over another's session [MQTT-3.1.4-3]. A will the
// account may not publish (topic, size or retain flag) is refused at connect,
// because mochi does not check the will when it later publishes it.
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
	case pk.Connect.ClientIdentifier != acct.clientID:
		h.Log.Warn("connect refused", "reason", "client id of another identity", "user", user, "client", pk.Connect.ClientIdentifier, "remote", cl.Net.Remote)
		return false
	case pk.Connect.WillFlag && !acct.writeRule(pk.Connect.WillTopic).permits(len(pk.Connect.WillPayload), pk.Connect.WillRetain):
		h.Log.Info("connect refused", "reason", "will denied", "user", user, "topic", pk.Connect.WillTopic,
			"bytes", len(pk.Connect.WillPayload), "retain", pk.Connect.WillRetain)
		return false
	}
	return true
}

// OnPublish enforces the size and retain rules of the publish's grant (the
// topic itself was checked by OnACLCheck just before). A refused QoS 0
// message is dropped; at QoS 1 and 2 an MQTT 5 client gets a PUBACK with
// 0x87 Not authorized, and an MQTT 3.1.1 client, which has no negative
// acknowledgement, is disconnected, as for a denied topic.
func (h *aclHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	acct, ok := h.policy.Load().accounts[string(cl.Properties.Username)]
	if ok && acct.writeRule(pk.TopicName).permits(len(pk.Payload), pk.FixedHeader.Retain) {
		return pk, nil
	}
	h.Log.Info("publish refused", "user", string(cl.Properties.Username), "client", cl.ID, "topic", pk.TopicName,
		"bytes", len(pk.Payload), "retain", pk.FixedHeader.Retain)
	switch {
	case pk.FixedHeader.Qos == 0:
		return pk, packets.ErrRejectPacket
	case cl.Properties.ProtocolVersion == 5:
		return pk, packets.ErrNotAuthorized
	default:
		cl.Stop(packets.ErrNotAuthorized)
		return pk, packets.ErrRejectPacket
	}
}

// OnACLCheck authorises one publish (write), subscription filter or delivery
// (read) for the client's authenticated username.
func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	// Indexing with string(bytes) does not allocate.
	acct, ok := h.policy.Load().accounts[string(cl.Properties.Username)]
	if ok && acct.allowed(topic, write) {
		return true
	}
	if h.Log.Enabled(context.Background(), slog.LevelDebug) { // the arguments would allocate even when not logged
		h.Log.Debug("acl denied", "user", string(cl.Properties.Username), "client", cl.ID, "topic", topic, "write", write)
	}
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

// tcpListener is the broker's TCP listener, in place of mochi's
// listeners.TCP, for two shutdown faults of mochi v2.7.9:
//
//   - listeners.TCP.Close disconnects the clients before it closes the
//     socket, so a client that reconnects at once is accepted into a
//     listener nobody serves any more and waits out its connect timeout
//     (5 s for loalang's clients) before trying the restarted broker;
//     listeners.TCP.Serve also drops, unclosed, a connection accepted after
//     Close began. tcpListener closes the socket first and closes any
//     straggler.
//   - Server.Close disconnects a listener's clients through
//     Clients.GetByListener, which read-locks the clients map and then calls
//     Len, read-locking it again; a client detaching at that moment
//     (attachClient's Clients.Delete takes the write lock) blocks both for
//     ever. tcpListener lists the clients with GetAll, which locks once.
type tcpListener struct {
	id, address string
	server      *mqtt.Server
	listen      net.Listener
	log         *slog.Logger
	closed      atomic.Bool
}

// ID returns the listener's name in mochi's client records.
func (l *tcpListener) ID() string { return l.id }

// Protocol returns "tcp".
func (l *tcpListener) Protocol() string { return "tcp" }

// Address returns the bound address once Init has run.
func (l *tcpListener) Address() string {
	if l.listen != nil {
		return l.listen.Addr().String()
	}
	return l.address
}

// Init binds the socket.
func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.listen = ln
	return nil
}

// Serve accepts connections until Close and hands each to establish.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.listen.Accept()
		if err != nil {
			return
		}
		if l.closed.Load() {
			_ = conn.Close()
			return
		}
		go func() {
			if err := establish(l.id, conn); err != nil {
				l.log.Warn("", "error", err) // as listeners.TCP; messageHandler names and grades it
			}
		}()
	}
}

// Close closes the socket, then disconnects the listener's clients.
func (l *tcpListener) Close(listeners.CloseFn) {
	if !l.closed.CompareAndSwap(false, true) {
		return
	}
	if l.listen != nil {
		_ = l.listen.Close()
	}
	for _, cl := range l.server.Clients.GetAll() {
		if cl.Net.Listener == l.id && !cl.Closed() {
			_ = l.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
