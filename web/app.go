package web

import (
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/loalang/loalang/auth"
)

// The web app: a few static pages (go:embed, no CDN, no build step) signed
// in with a session cookie. See docs/webapp.md.
//
// Session design: the cookie carries the same opaque token as a bearer
// login (auth.Sessions, stored under its hash), so sessions expire and are
// revoked in one place. A cookie is sent by the browser on its own, so every
// state-changing request authenticated by it must also prove it came from
// the app: the per-session CSRF token (auth.Session.CSRF) in the
// X-CSRF-Token header (fetch) or the csrf form field (plain forms), and no
// cross-origin Origin or Sec-Fetch-Site (Fetch Metadata, W3C). SameSite=
// Strict alone is not enough: other ports of the same host are same-site.

// SessionCookie is the name of the web app's session cookie.
const SessionCookie = "loalang_session"

// CSRFHeader is the request header that carries the session's CSRF token.
const CSRFHeader = "X-CSRF-Token"

// csrfField is the form field that carries the CSRF token for plain forms.
const csrfField = "csrf"

//go:embed app
var appFS embed.FS

var errCSRF = fmt.Errorf("csrf: request not from this app (missing or wrong %s, or cross-origin): %w", CSRFHeader, errForbidden)

// page is one page of the app and the roles that may open it.
type page struct {
	name  string
	roles []auth.Role
}

// pages lists the app's pages; the server checks the role of each, and the
// API behind it checks again.
var pages = []page{
	{"home", []auth.Role{auth.RoleAdmin, auth.RoleHead, auth.RolePolice}},
	{"broadcast", []auth.Role{auth.RoleAdmin, auth.RoleHead}},
	{"drafts", []auth.Role{auth.RoleAdmin, auth.RoleHead}},
	{"schedules", []auth.Role{auth.RoleAdmin, auth.RoleHead}},
	{"library", []auth.Role{auth.RoleAdmin, auth.RoleHead}},
	{"reports", []auth.Role{auth.RoleAdmin, auth.RoleHead}},
	{"devices", []auth.Role{auth.RoleAdmin, auth.RoleHead}},
	{"cameras", []auth.Role{auth.RoleAdmin, auth.RolePolice}},
	{"log", []auth.Role{auth.RoleAdmin}},
	{"users", []auth.Role{auth.RoleAdmin}},
	{"account", []auth.Role{auth.RoleAdmin, auth.RoleHead, auth.RolePolice}},
}

var appTemplates = template.Must(template.ParseFS(appFS, "app/*.html"))

// appRoutes registers the web app: the sign-in page, sign-out, the pages
// and their static assets.
func (s *Server) appRoutes() {
	static, _ := fs.Sub(appFS, "app/static")
	files := http.StripPrefix("/app/static/", http.FileServerFS(static))
	s.Handle("GET /app/static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	s.Handle("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/app/", http.StatusSeeOther)
	})
	s.Handle("GET /app/login", s.handleLoginPage)
	s.Handle("POST /app/login", s.handleLoginForm)
	s.Handle("POST /app/logout", s.handleLogoutForm)
	s.mux.HandleFunc("GET /app/{$}", s.handlePage("home"))
	s.record(Route{Pattern: "GET /app/{$}", Roles: pages[0].roles, Page: true})
	for _, p := range pages {
		s.mux.HandleFunc("GET /app/"+p.name, s.handlePage(p.name))
		s.record(Route{Pattern: "GET /app/" + p.name, Roles: p.roles, Page: true})
	}
	s.Handle("GET /app/", func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, http.StatusNotFound)
	})
}

// securityHeaders are sent with every page: no framing, no foreign
// scripts, media only from this origin and WebRTC.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "+
		"connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
}

// pageData is what the page shell template sees.
type pageData struct {
	Page     string
	Username string
	Role     string
	CSRF     string
	Lang     string
	Next     string
	Error    string
	Status   int
}

// lang is the page language: the lang cookie (set by the language switch),
// Vietnamese by default.
func lang(r *http.Request) string {
	if c, err := r.Cookie("lang"); err == nil && c.Value == "en" {
		return "en"
	}
	return "vi"
}

func (s *Server) handlePage(name string) http.HandlerFunc {
	var roles []auth.Role
	for _, p := range pages {
		if p.name == name {
			roles = p.roles
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		u, sess, err := s.cookieSession(r)
		if err != nil {
			http.Redirect(w, r, "/app/login?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
			return
		}
		allowed := false
		for _, role := range roles {
			allowed = allowed || u.Role == role
		}
		if !allowed {
			s.renderError(w, r, http.StatusForbidden)
			return
		}
		securityHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := appTemplates.ExecuteTemplate(w, "page.html", pageData{
			Page: name, Username: u.Username, Role: string(u.Role), CSRF: sess.CSRF, Lang: lang(r),
		}); err != nil {
			s.log.Error("render page", "page", name, "err", err)
		}
	}
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, code int) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	appTemplates.ExecuteTemplate(w, "error.html", pageData{Status: code, Lang: lang(r)})
}

// safeNext keeps the post-login redirect inside the app (no open redirect).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/app/") || strings.HasPrefix(next, "/app//") || strings.ContainsAny(next, "\\\r\n") {
		return "/app/"
	}
	return next
}

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.cookieSession(r); err == nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, "", r.URL.Query().Get("next"))
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg, next string) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	appTemplates.ExecuteTemplate(w, "login.html", pageData{Lang: lang(r), Error: msg, Next: safeNext(next)})
}

// handleLoginForm signs in from the form: the same rate limit and audit as
// POST /api/v1/login (Server.Login). There is no session yet, so no CSRF
// token: login CSRF is refused by the origin checks instead.
func (s *Server) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		s.renderLogin(w, r, http.StatusForbidden, "csrf", "")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		code := http.StatusBadRequest
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			code = http.StatusRequestEntityTooLarge
		}
		s.renderLogin(w, r, code, "bad", "")
		return
	}
	next := r.PostForm.Get("next")
	tok, sess, err := s.Login(r, r.PostForm.Get("username"), r.PostForm.Get("password"))
	switch {
	case errors.Is(err, auth.ErrRateLimited):
		w.Header().Set("Retry-After", s.retryAfter(r))
		s.renderLogin(w, r, http.StatusTooManyRequests, "throttled", next)
		return
	case errors.Is(err, auth.ErrBadPassword):
		s.renderLogin(w, r, http.StatusUnauthorized, "wrong", next)
		return
	case err != nil:
		s.log.Error("login failed", "err", err)
		s.renderLogin(w, r, http.StatusInternalServerError, "internal", next)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: tok, Path: "/", Expires: sess.Expires,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// handleLogoutForm ends the cookie session (CSRF-checked, so another site
// cannot sign the user out).
func (s *Server) handleLogoutForm(w http.ResponseWriter, r *http.Request) {
	u, key, err := s.authenticateCookie(r)
	if err != nil && !errors.Is(err, errUnauthenticated) {
		writeError(w, r, err)
		return
	}
	if err == nil {
		if err := s.sessions.Logout(r.Context(), key, u.Username, clientIP(r)); err != nil {
			writeError(w, r, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/app/login", http.StatusSeeOther)
}

// cookieSession reads the session named by the cookie, without CSRF checks
// (for GET pages).
func (s *Server) cookieSession(r *http.Request) (auth.User, auth.Session, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return auth.User{}, auth.Session{}, errUnauthenticated
	}
	return s.session(r.Context(), c.Value)
}

// authenticateCookie authenticates an API request by the session cookie.
// Safe methods (RFC 9110 §9.2.1) pass on the cookie alone; any other needs
// the CSRF token and a same-origin request.
func (s *Server) authenticateCookie(r *http.Request) (auth.User, string, error) {
	u, sess, err := s.cookieSession(r)
	if err != nil {
		return u, "", err
	}
	c, _ := r.Cookie(SessionCookie)
	key := auth.TokenKey(c.Value)
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return u, key, nil
	}
	if !sameOrigin(r) {
		return auth.User{}, "", errCSRF
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
			if r.ParseForm() == nil {
				got = r.PostForm.Get(csrfField)
			}
		}
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
		return auth.User{}, "", errCSRF
	}
	return u, key, nil
}

// sameOrigin applies Fetch Metadata (Sec-Fetch-Site, W3C) and, for
// browsers without it, the Origin header (RFC 6454 §7): a browser request
// from another origin, even another port of this host, is refused.
// Sec-Fetch-Site is preferred because the app's Referrer-Policy:
// no-referrer makes browsers send "Origin: null" on its own form posts.
// Requests with neither header (non-browser clients) pass; they still need
// the CSRF token, which only the app has.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || origin == "null" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host)
}
