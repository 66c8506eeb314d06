package daemon

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/web"
)

// tlsConfig loads the configured certificate, or the self-signed one kept
// in the data dir (generated on first start), and logs its SHA-256
// fingerprint so a phone user can check the browser's warning against it.
func (d *Daemon) tlsConfig() (*tls.Config, error) {
	h := d.cfg.HTTP
	cert, info, err := web.LoadCertificate(d.cfg.DataDir, h.CertFile, h.KeyFile)
	if err != nil {
		return nil, &config.Error{File: "config", Key: "http.cert_file", Reason: err.Error()}
	}
	if info.Generated {
		d.log.Warn("generated self-signed certificate", "reason", info.Reason, "hosts", info.Hosts)
	}
	d.log.Info("tls certificate", "sha256", info.Fingerprint, "self_signed", info.SelfSigned, "not_after", info.NotAfter.UTC().Format(time.DateOnly))
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// wrapTLS turns the main listener into HTTPS when http.tls is set.
func (d *Daemon) wrapTLS(ln net.Listener) (net.Listener, error) {
	if !d.cfg.HTTP.TLS {
		return ln, nil
	}
	tc, err := d.tlsConfig()
	if err != nil {
		ln.Close()
		return nil, err
	}
	d.ready.HTTPS = ln.Addr().String()
	return tls.NewListener(ln, tc), nil
}

// listenTLS starts the second, HTTPS-only listener of http.tls_addr.
func (d *Daemon) listenTLS() error {
	addr := d.cfg.HTTP.TLSAddr
	if addr == "" {
		return nil
	}
	tc, err := d.tlsConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return &config.Error{File: "config", Key: "http.tls_addr", Reason: err.Error()}
	}
	d.ready.HTTPS = ln.Addr().String()
	srv := &http.Server{Handler: d.web, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tc,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("https server stopped", "err", err)
		}
	}()
	d.closers = append(d.closers, func() error { return d.stopHTTP(srv, "https", 3*time.Second) })
	return nil
}
