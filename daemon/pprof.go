package daemon

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/loalang/loalang/config"
)

// listenPprof serves net/http/pprof on debug.pprof_addr, a loopback
// address (config validation refuses others), on a mux of its own so the
// profiles never appear on the API's listener. Off when the key is empty.
func (d *Daemon) listenPprof() error {
	addr := d.cfg.Debug.PprofAddr
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return &config.Error{File: "config", Key: "debug.pprof_addr", Reason: err.Error()}
	}
	d.ready.Pprof = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d.pprofSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	d.log.Info("profiling endpoint on", "addr", d.ready.Pprof)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.pprofSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("pprof server stopped", "err", err)
		}
	}()
	return nil
}

// closePprof stops the profiling listener; a profile being taken is cut.
func (d *Daemon) closePprof() {
	if d.pprofSrv == nil {
		return
	}
	if err := d.stopHTTP(d.pprofSrv, "pprof", time.Second); err != nil {
		d.log.Warn("stop pprof server", "err", err)
	}
}
