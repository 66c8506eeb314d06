// Package web is loalangd's HTTP adapter: the JSON API under /api/v1, the
// embedded web app, WHIP and WHEP. Every endpoint but /healthz checks a role;
// errors map to statuses in one place (errors.go).
package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/device"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/health"
)

// Devices is the presence registry the API reads.
type Devices interface {
	List() []device.State
}

// Commands sends device commands.
type Commands interface {
	Send(ctx context.Context, id string, cmd wire.Command) (wire.Reply, error)
}

// Config holds the server's settings.
type Config struct {
	// MaxBody bounds JSON request bodies.
	MaxBody int64
	// MetricsToken, when set, is a read-only bearer token that may scrape
	// /metrics and call nothing else (metrics.token_file). It is compared
	// in constant time and never logged.
	MetricsToken string
}

// Server serves the API.
type Server struct {
	cfg      Config
	trail    AuditTrail
	devices  Devices
	commands Commands
	// users and sessions own the accounts' and sign-in rules (auth).
	users    *auth.Users
	sessions *auth.Sessions
	// logins counts sign-in attempts by result (ok, failed, throttled).
	logins   *prometheus.CounterVec
	log      *slog.Logger
	registry *prometheus.Registry
	mux      *http.ServeMux
	now      func() time.Time
	bc       BroadcastDeps
	hall     Hall
	health   *health.Registry

	routesMu  sync.Mutex
	routeList []Route
}

// AuditTrail is the audit trail as the API uses it.
type AuditTrail interface {
	AppendAudit(entries ...audit.Entry) error
	// AuditRange returns entries from since to until (zero: open), at
	// most limit of them (0: all).
	AuditRange(since, until time.Time, limit int) ([]audit.Entry, error)
}

// Deps are the domain services behind the API.
type Deps struct {
	// Audit is the audit trail: handlers append to it and /api/v1/audit
	// reads it (the store implements it).
	Audit    AuditTrail
	Devices  Devices
	Commands Commands
	// Users and Sessions are the accounts and sign-in services.
	Users    *auth.Users
	Sessions *auth.Sessions
	// Metrics is the registry /metrics serves; collectors are registered by
	// the daemon.
	Metrics *prometheus.Registry
	// Health is what /healthz reports; nil means always ok.
	Health *health.Registry
}

// New returns a server with every route registered.
func New(cfg Config, deps Deps, log *slog.Logger) *Server {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 64 << 10
	}
	s := &Server{
		cfg: cfg, trail: deps.Audit, devices: deps.Devices, commands: deps.Commands,
		users: deps.Users, sessions: deps.Sessions,
		log:      log.With("component", "web"),
		registry: deps.Metrics,
		health:   deps.Health,
		mux:      http.NewServeMux(),
		now:      time.Now,
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loalang_login_attempts_total",
			Help: "Sign-in attempts by result: ok, failed (wrong password, unknown or malformed user) or throttled (refused unchecked)."}, []string{"result"}),
	}
	if s.registry != nil {
		s.registry.MustRegister(s.logins)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	every := []auth.Role{auth.RoleAdmin, auth.RoleHead, auth.RolePolice}
	s.Handle("GET /healthz", s.handleHealth)
	if s.registry != nil {
		metrics := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}).ServeHTTP
		admin := s.require(metrics, auth.RoleAdmin)
		s.record(Route{Pattern: "GET /metrics", Roles: []auth.Role{auth.RoleAdmin}})
		s.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			if s.metricsToken(r) {
				metrics(w, r)
				return
			}
			admin(w, r)
		})
	}
	s.Handle("POST /api/v1/login", s.handleLogin)
	s.Handle("POST /api/v1/logout", s.handleLogout, every...)
	s.Handle("GET /api/v1/me", s.handleMe, every...)
	s.Handle("PUT /api/v1/me/password", s.handleOwnPassword, every...)
	s.Handle("GET /api/v1/users", s.handleUsers, auth.RoleAdmin)
	s.Handle("POST /api/v1/users", s.handleCreateUser, auth.RoleAdmin)
	s.Handle("PUT /api/v1/users/{username}", s.handleUpdateUser, auth.RoleAdmin)
	s.Handle("DELETE /api/v1/users/{username}", s.handleDeleteUser, auth.RoleAdmin)
	s.Handle("GET /api/v1/devices", s.handleDevices, auth.RoleAdmin, auth.RoleHead)
	s.Handle("POST /api/v1/devices/{id}/ping", s.handlePing, auth.RoleAdmin, auth.RoleHead)
	s.Handle("POST /api/v1/devices/{id}/volume", s.handleVolume, auth.RoleAdmin, auth.RoleHead)
	s.Handle("GET /api/v1/audit", s.handleAudit, auth.RoleAdmin)
	s.Handle("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errNotFound)
	})
	s.appRoutes() // web app pages and sign-in (app.go)
}

// Route is one registered pattern and who may use it. Routes lists them
// for the access-matrix test, so a route cannot be added without saying
// who may call it.
type Route struct {
	Pattern string
	// Roles may call it; empty means no sign-in is needed.
	Roles []auth.Role
	// Page marks a web app page: its roles are checked on the cookie
	// session, and anonymous callers are sent to the sign-in page.
	Page bool
}

// Routes returns every registered route, in registration order.
func (s *Server) Routes() []Route {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	return slices.Clone(s.routeList)
}

func (s *Server) record(r Route) {
	s.routesMu.Lock()
	s.routeList = append(s.routeList, r)
	s.routesMu.Unlock()
}

// Handle registers a route with a role check (none: the route is public);
// features wired by the daemon (broadcasts, cameras, schedules) add theirs
// through it too.
func (s *Server) Handle(pattern string, h http.HandlerFunc, roles ...auth.Role) {
	s.record(Route{Pattern: pattern, Roles: roles})
	if len(roles) == 0 {
		s.mux.HandleFunc(pattern, h)
		return
	}
	s.mux.HandleFunc(pattern, s.require(h, roles...))
}

// handleHealth answers 200 "ok" while every part works, and 503 with the
// parts that do not and why, so a load balancer, systemd watchdog or
// operator sees a stopped service. It needs no sign-in: it names
// components and faults, never data or secrets.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	var problems []health.Problem
	if s.health != nil {
		problems = s.health.Problems()
	}
	if len(problems) == 0 {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "degraded", "problems": problems})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), logKey{}, s.log)))
}

type ctxKey struct{}

// sessionKey is the context key of the request's session (its store key).
type sessionKey struct{}

// sessionKeyFrom returns the store key of the session that authenticated
// the request, or "".
func sessionKeyFrom(ctx context.Context) string {
	k, _ := ctx.Value(sessionKey{}).(string)
	return k
}

type logKey struct{}

// LogFrom returns the server's logger for a request.
func LogFrom(r *http.Request) *slog.Logger {
	if l, ok := r.Context().Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// UserFrom returns the signed-in user of a request that passed a role check.
func UserFrom(ctx context.Context) auth.User {
	u, _ := ctx.Value(ctxKey{}).(auth.User)
	return u
}

// require wraps h with authentication (a bearer token) and a role check:
// no or bad token is 401, a wrong role 403.
func (s *Server) require(h http.HandlerFunc, roles ...auth.Role) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, key, err := s.authenticate(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		allowed := false
		for _, role := range roles {
			allowed = allowed || u.Role == role
		}
		if !allowed {
			writeError(w, r, errForbidden)
			return
		}
		ctx := context.WithValue(context.WithValue(r.Context(), ctxKey{}, u), sessionKey{}, key)
		h(w, r.WithContext(ctx))
	}
}

// metricsToken reports whether the request carries the metrics token.
// Both sides are hashed first, so the comparison takes the same time
// whatever the length of the guess.
func (s *Server) metricsToken(r *http.Request) bool {
	tok := bearer(r)
	if s.cfg.MetricsToken == "" || tok == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.cfg.MetricsToken))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// authenticate finds the user of a request by its bearer token or, without
// one, its session cookie; it returns the session's store key too.
func (s *Server) authenticate(r *http.Request) (auth.User, string, error) {
	tok := bearer(r)
	if tok == "" {
		// Web app: session cookie, CSRF-checked on unsafe methods (app.go).
		return s.authenticateCookie(r)
	}
	u, _, err := s.session(r.Context(), tok)
	return u, auth.TokenKey(tok), err
}

// session returns the user and session of a token that is still valid: not
// expired, and begun after the user's last password change.
func (s *Server) session(ctx context.Context, tok string) (auth.User, auth.Session, error) {
	u, sess, err := s.sessions.Lookup(ctx, tok)
	if err != nil {
		if err != auth.ErrNoSession { // a store failure, not a stale token
			s.log.Error("session lookup failed", "err", err)
		}
		return auth.User{}, auth.Session{}, errUnauthenticated
	}
	return u, sess, nil
}

// decode reads a bounded JSON body, rejecting unknown fields.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return fmt.Errorf("body: larger than %d bytes: %w", mbe.Limit, err) // 413
		}
		return badRequest("body: %v", err)
	}
	return nil
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// audit records an event; a failure is logged, never shown to the caller
// after the action itself succeeded.
func (s *Server) audit(r *http.Request, action audit.Action, target string, detail map[string]any) {
	actor := UserFrom(r.Context()).Username
	if err := s.trail.AppendAudit(audit.Entry{Time: s.now(), Actor: actor, Action: action, Target: target, Detail: detail}); err != nil {
		s.log.Error("audit failed", "action", action, "err", err)
	}
}

// Audit records an event on behalf of feature handlers registered with Handle.
func (s *Server) Audit(r *http.Request, action audit.Action, target string, detail map[string]any) {
	s.audit(r, action, target, detail)
}
