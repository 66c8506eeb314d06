// Command loalang is the operator's CLI, a thin client of loalangd's HTTP
// API.
//
//	loalang [--server URL] login [--username admin] [--password-file FILE]
//	loalang devices
//	loalang devices ping ID
//
// The server URL and token are kept in $XDG_CONFIG_HOME/loalang/cli.json
// (mode 0600) after login; LOALANG_SERVER and LOALANG_TOKEN override them.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if ok, err := uplinkCommand(os.Args[1:], os.Stdout, os.Stderr); ok { // uplink.go
		if err != nil {
			fmt.Fprintln(os.Stderr, "loalang:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loalang:", err)
		os.Exit(1)
	}
}

// session is what login stores.
type session struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

type cli struct {
	getenv func(string) string
	out    io.Writer
	in     io.Reader
	sess   session
	http   *http.Client
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("loalang", flag.ContinueOnError)
	server := fs.String("server", "", "loalangd URL, e.g. http://127.0.0.1:8080")
	insecure := fs.Bool("insecure", false, "accept a self-signed certificate (check its fingerprint first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := &cli{getenv: getenv, out: stdout, in: stdin, http: &http.Client{Timeout: 5 * time.Minute}}
	if *insecure {
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	c.sess, _ = c.loadSession()
	if v := getenv("LOALANG_SERVER"); v != "" {
		c.sess.Server = v
	}
	if v := getenv("LOALANG_TOKEN"); v != "" {
		c.sess.Token = v
	}
	if *server != "" {
		c.sess.Server = *server
	}
	if c.sess.Server == "" {
		c.sess.Server = "http://127.0.0.1:8080"
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return errors.New("usage: loalang [--server URL] login|devices|media|broadcast|stop-all|schedules [args]")
	}
	cmd, rest := rest[0], rest[1:]
	for _, sc := range commands {
		if sc.name == cmd {
			return sc.run(ctx, c, rest)
		}
	}
	return fmt.Errorf("unknown command %q", cmd)
}

type subcommand struct {
	name string
	run  func(ctx context.Context, c *cli, args []string) error
}

// commands is the CLI's command table; each feature file adds its entries.
var commands = []subcommand{
	{"login", cmdLogin},
	{"devices", cmdDevices},
}

func (c *cli) sessionPath() (string, error) {
	dir := c.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := c.getenv("HOME")
		if home == "" {
			return "", errors.New("neither XDG_CONFIG_HOME nor HOME is set")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "loalang", "cli.json"), nil
}

func (c *cli) loadSession() (session, error) {
	var s session
	p, err := c.sessionPath()
	if err != nil {
		return s, err
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(raw, &s)
}

func (c *cli) saveSession() error {
	p, err := c.sessionPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	raw, _ := json.Marshal(c.sess)
	return os.WriteFile(p, raw, 0o600)
}

// apiError is a non-2xx answer.
type apiError struct {
	Status int
	Msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Msg) }

// do sends a request with the stored token and decodes a JSON answer into out.
func (c *cli) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.sess.Server, "/")+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.sess.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.sess.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.Error += " (run `loalang login`)"
		}
		return &apiError{resp.StatusCode, e.Error}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *cli) json(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	return c.do(ctx, method, path, "application/json", body, out)
}

func cmdLogin(ctx context.Context, c *cli, args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	user := fs.String("username", "admin", "user name")
	pwFile := fs.String("password-file", "", "read the password from this file instead of standard input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var pw string
	if *pwFile != "" {
		raw, err := os.ReadFile(*pwFile)
		if err != nil {
			return err
		}
		pw = strings.TrimSpace(string(raw))
	} else {
		fmt.Fprint(c.out, "password: ")
		line, err := bufio.NewReader(c.in).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimSpace(line)
	}
	var resp struct {
		Token string `json:"token"`
	}
	if err := c.json(ctx, "POST", "/api/v1/login", map[string]string{"username": *user, "password": pw}, &resp); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	c.sess.Token = resp.Token
	if err := c.saveSession(); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	fmt.Fprintf(c.out, "logged in to %s as %s\n", c.sess.Server, *user)
	return nil
}

func cmdDevices(ctx context.Context, c *cli, args []string) error {
	if len(args) == 2 && args[0] == "ping" {
		var resp struct {
			RTT float64 `json:"rtt_ms"`
		}
		if err := c.json(ctx, "POST", "/api/v1/devices/"+args[1]+"/ping", nil, &resp); err != nil {
			return fmt.Errorf("ping %s: %w", args[1], err)
		}
		fmt.Fprintf(c.out, "%s answered in %.1f ms\n", args[1], resp.RTT)
		return nil
	}
	if len(args) != 0 {
		return errors.New("usage: loalang devices [ping ID]")
	}
	var devs []struct {
		ID       string     `json:"id"`
		Kind     string     `json:"kind"`
		Name     string     `json:"name"`
		Zones    []string   `json:"zones"`
		Online   bool       `json:"online"`
		LastSeen *time.Time `json:"last_seen"`
		Firmware string     `json:"firmware"`
		Volume   int        `json:"volume"`
	}
	if err := c.json(ctx, "GET", "/api/v1/devices", nil, &devs); err != nil {
		return err
	}
	rows := [][]string{{"ID", "KIND", "ZONES", "STATE", "LAST SEEN", "FIRMWARE", "VOL", "NAME"}}
	for _, d := range devs {
		state, seen := "offline", "-"
		if d.Online {
			state = "online"
		}
		if d.LastSeen != nil {
			seen = d.LastSeen.Local().Format("15:04:05")
		}
		rows = append(rows, []string{d.ID, d.Kind, strings.Join(d.Zones, ","), state, seen, d.Firmware, fmt.Sprint(d.Volume), d.Name})
	}
	printTable(c.out, rows)
	return nil
}

// printTable prints rows as aligned columns.
func printTable(w io.Writer, rows [][]string) {
	widths := map[int]int{}
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			b.WriteString(cell)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(cell))+2))
			}
		}
		fmt.Fprintln(w, b.String())
	}
}
