package commune

import (
	"embed"
	"io/fs"
	"net/http"
)

// appFS is the commune's web app: one page, its script and style.
//
//go:embed app
var appFS embed.FS

// appRoutes serves the web app at / and its files at /commune/static/.
// The page signs in through the API; every API call checks its role.
func (s *Server) appRoutes() {
	sub, _ := fs.Sub(appFS, "app")
	static := http.StripPrefix("/commune/static/", http.FileServerFS(sub))
	s.HandlePublic("GET /commune/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		static.ServeHTTP(w, r)
	}))
	s.HandlePublic("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
		w.Header().Set("X-Frame-Options", "DENY")
		http.ServeFileFS(w, r, sub, "index.html")
	}))
}
