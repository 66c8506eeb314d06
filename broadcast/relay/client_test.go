package relay

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/loalang/loalang/internal/egress"
)

// TestRelayClientRefusesLoopbackAfterRedirect is issue 11: an upstream the
// policy allows (127.0.0.2 stands for a public station here, the only
// addresses a test may use being loopback) redirects to 127.0.0.1, where
// the daemon's API listens. The redirect is refused, whether the target is
// named by address or by a name resolved at dial time, and the "API" never
// sees a request.
func TestRelayClientRefusesLoopbackAfterRedirect(t *testing.T) {
	var hits atomic.Int32
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("admin secrets"))
	}))
	defer inner.Close()
	_, port, _ := net.SplitHostPort(inner.Listener.Addr().String())

	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 not usable: %v", err)
	}
	target := ""
	station := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusFound)
	})}}
	station.Start()
	defer station.Close()

	policy := egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	client := Client(policy)
	for _, to := range []string{
		"http://127.0.0.1:" + port + "/api/v1/users",
		"http://localhost:" + port + "/api/v1/users",
		"http://[::ffff:127.0.0.1]:" + port + "/",
	} {
		target = to
		req, _ := http.NewRequestWithContext(context.Background(), "GET", station.URL+"/live.mp3", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("redirect to %s followed: %s", to, resp.Status)
			continue
		}
		if !errors.Is(err, egress.ErrForbidden) {
			t.Errorf("redirect to %s: %v, want ErrForbidden", to, err)
		}
		t.Logf("redirect to %s: %v", to, err)
	}
	// Straight to the API, bypassing CheckURL, by address and by a name
	// that resolves to loopback: the dialer refuses both.
	dialOnly := Client(policy)
	dialOnly.CheckRedirect = nil
	for _, u := range []string{inner.URL, "http://localhost:" + port + "/"} {
		resp, err := dialOnly.Get(u)
		if err == nil {
			resp.Body.Close()
			t.Errorf("dial to %s allowed", u)
		} else if !errors.Is(err, egress.ErrForbidden) {
			t.Errorf("dial to %s: %v", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback API got %d requests", n)
	}
	// The allowed upstream itself is reachable.
	target = station.URL + "/"
	ok := Client(egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	ok.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if resp, err := ok.Get(station.URL); err != nil {
		t.Fatalf("allowed upstream: %v", err)
	} else {
		resp.Body.Close()
	}
}

// TestRelayClientRedirectLimit: an allowed upstream that redirects forever
// is given up after MaxRedirects.
func TestRelayClientRedirectLimit(t *testing.T) {
	var hits atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, srv.URL+"/again", http.StatusFound)
	}))
	defer srv.Close()
	client := Client(egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	resp, err := client.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
		t.Fatal("endless redirects followed to the end")
	}
	if n := hits.Load(); n != MaxRedirects {
		t.Fatalf("%d requests, want %d", n, MaxRedirects)
	}
	t.Logf("%v", err)
}
