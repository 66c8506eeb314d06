// Package commune is the commune office's server (role: commune in the
// config, docs/commune.md): it signs in the commune's staff, keeps every
// village's state from their uplink events in its own bbolt file, and
// signs and sends broadcast commands to the villages after approval
// (Circular 39/2020/TT-BTTTT: biên tập, duyệt). Other packages mount
// their routes on it with Server.Handle (docs/commune.md, "Extending the commune server").
package commune

import (
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/health"
	"github.com/loalang/loalang/uplink"
	"github.com/loalang/loalang/whip"
)

// Roles at the commune. Admin and police are the auth package's; editor
// and approver are the two steps of Circular 39/2020 (biên tập, duyệt).
const (
	RoleAdmin    = string(auth.RoleAdmin)
	RoleEditor   = "editor"
	RoleApprover = "approver"
	RolePolice   = string(auth.RolePolice)
)

// Roles lists the commune's roles.
var Roles = []string{RoleAdmin, RoleEditor, RoleApprover, RolePolice}

// AdminPassFile is where the first admin's random password is written,
// in data_dir, when the store has no user: there is no default password.
const AdminPassFile = "initial-admin-password"

const (
	sessionCookie = "loalang_commune"
	csrfHeader    = "X-CSRF-Token"
	sessionTTL    = 12 * time.Hour
)

// Server is the commune role's HTTP server and state.
type Server struct {
	cfg    config.Config
	log    *slog.Logger
	base   *slog.Logger // log without the component attribute
	db     *db
	mux    *http.ServeMux
	key    ed25519.PrivateKey
	limit  *auth.Limiter
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mqtt   *link
	kick   chan struct{}
	health *health.Registry
	// live is the WHIP ingest of live speech and liveMax a speech's
	// longest duration, set by LiveMount.
	live    *whip.Service
	liveMax time.Duration

	closeOnce sync.Once
}

type ctxKey struct{}

// UserFrom returns the signed-in user of a request that went through a
// handler mounted with Handle.
func UserFrom(ctx context.Context) (auth.User, bool) {
	u, ok := ctx.Value(ctxKey{}).(auth.User)
	return u, ok
}

// New opens the commune's store in cfg.DataDir, creates the first admin
// if there is no user (its password in <data_dir>/initial-admin-password),
// reads the signing key and connects to the commune's Mosquitto in the
// background (a broker that is down is retried, never fatal).
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	return newServer(ctx, cfg, log, time.Now)
}

// newServer is New with the clock injected (tests).
func newServer(ctx context.Context, cfg config.Config, log *slog.Logger, now func() time.Time) (*Server, error) {
	if cfg.Role != config.RoleCommune {
		return nil, errors.New("commune: the config's role is not commune")
	}
	base := log // for parts with their own component (live speech)
	log = log.With("component", "commune")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("commune data dir: %w", err)
	}
	key, err := uplink.ReadPrivateKey(cfg.Commune.SigningKeyFile)
	if err != nil {
		return nil, fmt.Errorf("commune.signing_key_file: %w", err)
	}
	d, err := openDB(filepath.Join(cfg.DataDir, DBFile))
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, base: base, db: d, mux: http.NewServeMux(), key: key,
		limit: auth.NewLimiter(5, 10*time.Second), now: now, kick: make(chan struct{}, 1), health: health.New()}
	if err := s.bootstrapAdmin(); err != nil {
		d.close()
		return nil, err
	}
	if err := d.bolt.Update(func(tx *bolt.Tx) error { return endOrphanLive(tx, now().UTC()) }); err != nil {
		d.close()
		return nil, fmt.Errorf("end live speeches of the last run: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.routes()
	if err := s.startMQTT(); err != nil {
		s.cancel()
		d.close()
		return nil, err
	}
	return s, nil
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Close ends the live speeches, stops the MQTT link and the resender and
// closes the store.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.live != nil {
			// The speeches end first: their End chunks and records need
			// the broker link and the store.
			s.live.Close()
		}
		s.cancel()
		s.wg.Wait()
		err = s.db.close()
	})
	return err
}

// Handle mounts h at pattern (a net/http ServeMux pattern, e.g.
// "POST /api/v1/commune/whep/{village}/{camera}") for signed-in users
// whose role is in roles (admin is always allowed). The user is in the
// request's context (UserFrom). Unsafe methods from the web app's cookie
// session must carry the session's CSRF token in X-CSRF-Token.
func (s *Server) Handle(pattern string, roles []string, h http.Handler) {
	s.mux.Handle(pattern, s.require(roles, h))
}

// HandlePublic mounts h at pattern without sign-in: for what villages
// fetch (recordings) and static files. h checks whatever it needs itself.
func (s *Server) HandlePublic(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) require(roles []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if u.Role != auth.RoleAdmin && !slices.Contains(roles, string(u.Role)) {
			httpError(w, http.StatusForbidden, "your role may not do this")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, u)))
	})
}

// authenticate finds the session from a bearer token or the cookie and
// checks the CSRF token of a cookie session's unsafe request; it answers
// 401/403 itself when it fails.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.User, bool) {
	token, fromCookie := "", false
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimPrefix(h, "Bearer ")
	} else if c, err := r.Cookie(sessionCookie); err == nil {
		token, fromCookie = c.Value, true
	}
	if token == "" {
		httpError(w, http.StatusUnauthorized, "sign in first")
		return auth.User{}, false
	}
	var sess auth.Session
	var u auth.User
	err := s.db.bolt.View(func(tx *bolt.Tx) error {
		if err := get(tx, bSessions, auth.TokenKey(token), &sess); err != nil {
			return err
		}
		return get(tx, bUsers, sess.Username, &u)
	})
	if err != nil || !sess.ValidFor(u, s.now()) {
		httpError(w, http.StatusUnauthorized, "sign in first")
		return auth.User{}, false
	}
	if fromCookie && r.Method != http.MethodGet && r.Method != http.MethodHead {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(sess.CSRF)) != 1 {
			httpError(w, http.StatusForbidden, "missing or wrong "+csrfHeader)
			return auth.User{}, false
		}
	}
	return u, true
}

// bootstrapAdmin creates user admin with a random password written to
// <data_dir>/initial-admin-password when there is no user at all.
func (s *Server) bootstrapAdmin() error {
	var n int
	s.db.bolt.View(func(tx *bolt.Tx) error { n = tx.Bucket(bUsers).Stats().KeyN; return nil })
	if n > 0 {
		return nil
	}
	pw := auth.RandomSecret(18)
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return fmt.Errorf("commune admin: %w", err)
	}
	path := filepath.Join(s.cfg.DataDir, AdminPassFile)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	now := s.now().UTC()
	return s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := put(tx, bUsers, "admin", auth.User{Username: "admin", Role: auth.RoleAdmin, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		return audit(tx, AuditEntry{Time: now, Actor: "system", Action: "user.create", Target: "admin", Detail: map[string]any{"role": "admin", "initial": true}})
	})
}

func (s *Server) routes() {
	s.mux.HandleFunc("POST /api/v1/commune/login", s.login)
	s.Handle("POST /api/v1/commune/logout", Roles, http.HandlerFunc(s.logout))
	s.Handle("GET /api/v1/commune/me", Roles, http.HandlerFunc(s.me))
	s.Handle("GET /api/v1/commune/users", []string{RoleAdmin}, http.HandlerFunc(s.listUsers))
	s.Handle("POST /api/v1/commune/users", []string{RoleAdmin}, http.HandlerFunc(s.createUser))
	s.userRoutes()
	// GET /healthz: 200 while every part works, 503 with the problems
	// (health.Problem: component, reason, since) otherwise.
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		probs := s.health.Problems()
		code := http.StatusOK
		if len(probs) > 0 {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ok": len(probs) == 0, "problems": probs})
	})
	s.extraRoutes()
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var in struct{ Username, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		httpError(w, http.StatusBadRequest, "body must be JSON {username, password}")
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !s.limit.Allow(ip) {
		httpError(w, http.StatusTooManyRequests, auth.ErrRateLimited.Error())
		return
	}
	if auth.ValidUsername(in.Username) != nil {
		s.limit.Fail(ip, in.Username)
		httpError(w, http.StatusUnauthorized, auth.ErrBadPassword.Error())
		return
	}
	var u auth.User
	err := s.db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bUsers, in.Username, &u) })
	hash := u.PasswordHash
	if err != nil {
		hash = auth.DummyHash()
	}
	if !auth.VerifyPassword(hash, in.Password) || err != nil {
		s.limit.Fail(ip, in.Username)
		s.db.bolt.Update(func(tx *bolt.Tx) error {
			return audit(tx, AuditEntry{Time: s.now().UTC(), Actor: in.Username, Action: "login.fail", Detail: map[string]any{"ip": ip}})
		})
		httpError(w, http.StatusUnauthorized, auth.ErrBadPassword.Error())
		return
	}
	token, csrf := auth.RandomSecret(32), auth.RandomSecret(18)
	sess := auth.Session{Username: u.Username, Expires: s.now().Add(sessionTTL), CSRF: csrf, Epoch: u.SessionEpoch}
	err = s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := put(tx, bSessions, auth.TokenKey(token), sess); err != nil {
			return err
		}
		return audit(tx, AuditEntry{Time: s.now().UTC(), Actor: u.Username, Action: "login", Detail: map[string]any{"ip": ip}})
	})
	if err != nil {
		s.log.Error("store session", "err", err)
		httpError(w, http.StatusInternalServerError, "could not store the session")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, Expires: sess.Expires})
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "csrf": csrf, "username": u.Username, "role": u.Role, "expires": sess.Expires})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if c, err := r.Cookie(sessionCookie); err == nil && token == "" {
		token = c.Value
	}
	s.db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bSessions).Delete([]byte(auth.TokenKey(token))) })
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	u, _ := UserFrom(r.Context())
	writeJSON(w, http.StatusOK, userView(u))
}

// userView is a user without the password hash.
func userView(u auth.User) map[string]any {
	return map[string]any{"username": u.Username, "role": u.Role, "cameras": u.Cameras, "created_at": u.CreatedAt}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	var users []auth.User
	s.db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		users, err = list[auth.User](tx, bUsers, "")
		return err
	})
	out := []map[string]any{}
	for _, u := range users {
		out = append(out, userView(u))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	actor, _ := UserFrom(r.Context())
	var in struct {
		Username, Password, Role string
		Cameras                  []string
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		httpError(w, http.StatusBadRequest, "body must be JSON {username, password, role, cameras}")
		return
	}
	if err := auth.ValidUsername(in.Username); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !slices.Contains(Roles, in.Role) {
		httpError(w, http.StatusBadRequest, "role must be one of "+strings.Join(Roles, ", "))
		return
	}
	if err := auth.ValidCameras(in.Cameras); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := s.now().UTC()
	u := auth.User{Username: in.Username, Role: auth.Role(in.Role), PasswordHash: hash, Cameras: in.Cameras, CreatedAt: now, UpdatedAt: now}
	err = s.db.bolt.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bUsers).Get([]byte(u.Username)) != nil {
			return errExists
		}
		if err := put(tx, bUsers, u.Username, u); err != nil {
			return err
		}
		return audit(tx, AuditEntry{Time: now, Actor: actor.Username, Action: "user.create", Target: u.Username, Detail: map[string]any{"role": in.Role}})
	})
	if errors.Is(err, errExists) {
		httpError(w, http.StatusConflict, "user exists")
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "could not store the user")
		return
	}
	writeJSON(w, http.StatusCreated, userView(u))
}

var errExists = errors.New("exists")

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Run serves the commune role on cfg.HTTP.Addr (HTTPS with
// http.cert_file and key_file) until ctx ends: what cmd/loalangd runs for
// role: commune. Each mount is called with the server before it listens,
// to add routes with Handle (docs/commune.md, "Extending the commune server").
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, mounts ...func(*Server) error) error {
	s, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	for _, m := range mounts {
		if err := m(s); err != nil {
			return fmt.Errorf("commune mount: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("commune listen %s: %w", cfg.HTTP.Addr, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("commune server listening", "component", "commune", "addr", ln.Addr().String(), "commune", cfg.Commune.ID)
	errc := make(chan error, 1)
	go func() {
		if cfg.HTTP.CertFile != "" {
			errc <- srv.ServeTLS(ln, cfg.HTTP.CertFile, cfg.HTTP.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return fmt.Errorf("commune http: %w", err)
	}
}
