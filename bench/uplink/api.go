package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loalang/loalang/uplink"
)

// apiClient reads a village's GET /api/v1/uplink as admin.
type apiClient struct {
	base, token string
	hc          *http.Client
}

func newAPI(addr, dir string) (*apiClient, error) {
	pw, err := os.ReadFile(filepath.Join(dir, "initial-admin-password"))
	if err != nil {
		return nil, err
	}
	a := &apiClient{base: "http://" + addr, hc: &http.Client{Timeout: 10 * time.Second}}
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": strings.TrimSpace(string(pw))})
	resp, err := a.hc.Post(a.base+"/api/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		return nil, fmt.Errorf("login %s: status %d", addr, resp.StatusCode)
	}
	a.token = tok.Token
	return a, nil
}

func (a *apiClient) status() (uplink.Status, error) {
	req, _ := http.NewRequest("GET", a.base+"/api/v1/uplink", nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return uplink.Status{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var s uplink.Status
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("uplink status: %d %s", resp.StatusCode, raw)
	}
	return s, json.Unmarshal(raw, &s)
}

// serveMedia serves the emergency media on a loopback port.
func serveMedia(data []byte) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/storm.wav", func() { srv.Close() }, nil
}
