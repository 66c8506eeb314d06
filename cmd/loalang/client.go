package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

// session is what login stores.
type session struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// cli is the state every command shares: flags, session and HTTP client.
type cli struct {
	getenv func(string) string
	out    io.Writer
	in     io.Reader

	server   string
	insecure bool
	jsonOut  bool

	sess session
	http *http.Client
}

// setup applies the global flags and the stored session.
func (c *cli) setup() error {
	c.http = &http.Client{Timeout: 5 * time.Minute}
	if c.insecure {
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	c.sess, _ = c.loadSession()
	if v := c.getenv("LOALANG_SERVER"); v != "" {
		c.sess.Server = v
	}
	if v := c.getenv("LOALANG_TOKEN"); v != "" {
		c.sess.Token = v
	}
	if c.server != "" {
		c.sess.Server = c.server
	}
	if c.sess.Server == "" {
		c.sess.Server = "http://127.0.0.1:8080"
	}
	return nil
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

// apiError is a non-2xx answer, with the server's reason.
type apiError struct {
	Status int
	Msg    string
	Field  string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Msg) }

// do sends a request with the stored token and decodes a JSON answer into
// out (or copies it when out is an io.Writer).
func (c *cli) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	if c.sess.Token == "" && path != "/api/v1/login" {
		return errNotSignedIn
	}
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
		var e api.Error
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		if resp.StatusCode == http.StatusUnauthorized && path != "/api/v1/login" {
			e.Error += " (run `loalang login`)"
		}
		return &apiError{resp.StatusCode, e.Error, e.Field}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case io.Writer:
		_, err := io.Copy(o, resp.Body)
		return err
	}
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// json sends in as JSON and decodes the answer into out.
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

// emit prints v as indented JSON under --json, or calls human otherwise.
func (c *cli) emit(v any, human func()) error {
	if !c.jsonOut {
		human()
		return nil
	}
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// readSecret reads a password from file, or from standard input when file
// is empty or "-" (one line), prompting with what unless --json is set.
func (c *cli) readSecret(file, what string) (string, error) {
	if file != "" && file != "-" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(raw)), nil
	}
	if !c.jsonOut && file == "" {
		fmt.Fprintf(c.out, "%s: ", what)
	}
	line, err := bufio.NewReader(c.in).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	return strings.TrimSpace(line), nil
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// group makes a command that only holds subcommands: run alone it prints
// its help, and an unknown subcommand is a usage error.
func group(use, short, long, example string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
}

// completeFrom offers the ids a list endpoint returns, for shell
// completion of an argument (nothing when not signed in).
func (c *cli) completeFrom(path, field string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var list []map[string]any
		ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
		defer cancel()
		if err := c.json(ctx, "GET", path, nil, &list); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []string
		for _, m := range list {
			if s, ok := m[field].(string); ok && strings.HasPrefix(s, toComplete) {
				out = append(out, s)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
