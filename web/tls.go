package web

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/loalang/loalang/internal/atomicfile"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Self-signed certificate files in the data dir.
const (
	SelfSignedCert = "tls/cert.pem"
	SelfSignedKey  = "tls/key.pem"
)

// CertInfo describes the certificate in use.
type CertInfo struct {
	// Fingerprint is the SHA-256 of the leaf certificate (DER), as browsers
	// show it, colon-separated hex.
	Fingerprint string
	SelfSigned  bool
	// Generated is set when the self-signed certificate was (re)made now;
	// Reason says why.
	Generated bool
	Reason    string
	NotAfter  time.Time
	Hosts     []string
}

// LoadCertificate loads certFile/keyFile when given. Otherwise it loads
// the self-signed certificate kept in dataDir, generating it (ECDSA P-256,
// SANs localhost, 127.0.0.1, ::1 and every LAN address) on first start, or
// again when it expires within 30 days or a current LAN address is
// missing: browsers allow the microphone only in a secure context.
func LoadCertificate(dataDir, certFile, keyFile string) (tls.Certificate, CertInfo, error) {
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return cert, CertInfo{}, fmt.Errorf("load certificate %s: %w", certFile, err)
		}
		return cert, infoOf(cert, false), nil
	}
	certPath, keyPath := filepath.Join(dataDir, SelfSignedCert), filepath.Join(dataDir, SelfSignedKey)
	hosts := localHosts()
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	reason := ""
	switch {
	case errors.Is(err, os.ErrNotExist):
		reason = "first start"
	case err != nil:
		reason = "unreadable: " + err.Error()
	default:
		leaf := cert.Leaf
		if time.Until(leaf.NotAfter) < 30*24*time.Hour {
			reason = "expires soon"
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil && !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				reason = "new address " + h
			}
		}
	}
	if reason == "" {
		return cert, infoOf(cert, true), nil
	}
	if cert, err = generate(certPath, keyPath, hosts); err != nil {
		return cert, CertInfo{}, err
	}
	info := infoOf(cert, true)
	info.Generated, info.Reason = true, reason
	return cert, info, nil
}

func infoOf(cert tls.Certificate, self bool) CertInfo {
	sum := sha256.Sum256(cert.Certificate[0])
	hexed := strings.ToUpper(hex.EncodeToString(sum[:]))
	parts := make([]string, 0, len(sum))
	for i := 0; i < len(hexed); i += 2 {
		parts = append(parts, hexed[i:i+2])
	}
	info := CertInfo{Fingerprint: strings.Join(parts, ":"), SelfSigned: self}
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		info.NotAfter = leaf.NotAfter
		info.Hosts = append(info.Hosts, leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			info.Hosts = append(info.Hosts, ip.String())
		}
	}
	return info
}

// localHosts is localhost plus every unicast address of this machine.
func localHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if name, err := os.Hostname(); err == nil && name != "" && name != "localhost" {
		hosts = append(hosts, name)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsMulticast() {
			continue
		}
		if s := ipn.IP.String(); !slices.Contains(hosts, s) {
			hosts = append(hosts, s)
		}
	}
	return hosts
}

func generate(certPath, keyPath string, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "loalang", Organization: []string{"loalang village controller"}},
		NotBefore:    now.Add(-time.Hour),
		// 825 days: the longest validity Apple platforms accept for a
		// server certificate.
		NotAfter:    now.Add(825 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("marshal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate dir: %w", err)
	}
	if err := writeAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.WriteBytes(path, mode, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
