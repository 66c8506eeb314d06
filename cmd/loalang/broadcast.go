package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func init() {
	commands = append(commands,
		subcommand{"media", cmdMedia},
		subcommand{"broadcast", cmdBroadcast},
		subcommand{"stop-all", cmdStopAll},
	)
}

type mediaInfo struct {
	ID         string `json:"id"`
	DurationMS int64  `json:"duration_ms"`
	SourceName string `json:"source_name"`
}

// upload sends a file to POST /api/v1/media as multipart field "file".
func (c *cli) upload(ctx context.Context, path string) (mediaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return mediaInfo{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", filepath.Base(path))
		if err == nil {
			_, err = io.Copy(part, f)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	var info mediaInfo
	if err := c.do(ctx, "POST", "/api/v1/media", mw.FormDataContentType(), pr, &info); err != nil {
		return info, fmt.Errorf("upload %s: %w", path, err)
	}
	return info, nil
}

func cmdMedia(ctx context.Context, c *cli, args []string) error {
	switch {
	case len(args) == 2 && args[0] == "upload":
		info, err := c.upload(ctx, args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "%s  %.1f s  %s\n", info.ID, float64(info.DurationMS)/1000, info.SourceName)
		return nil
	case len(args) == 0 || (len(args) == 1 && args[0] == "list"):
		var list []mediaInfo
		if err := c.json(ctx, "GET", "/api/v1/media", nil, &list); err != nil {
			return err
		}
		rows := [][]string{{"ID", "SECONDS", "SOURCE"}}
		for _, m := range list {
			rows = append(rows, []string{m.ID, fmt.Sprintf("%.1f", float64(m.DurationMS)/1000), m.SourceName})
		}
		printTable(c.out, rows)
		return nil
	}
	return errors.New("usage: loalang media [list] | media upload FILE")
}

type deliveryView struct {
	ID       string `json:"id"`
	Expected uint64 `json:"frames_expected"`
	Played   uint64 `json:"frames_played"`
	Late     uint64 `json:"frames_late"`
	Lost     uint64 `json:"frames_lost"`
}

type broadcastView struct {
	ID       string         `json:"id"`
	State    string         `json:"state"`
	Reason   string         `json:"reason"`
	Zones    []string       `json:"zones"`
	Priority string         `json:"priority"`
	Packets  int            `json:"packets"`
	Actor    string         `json:"actor"`
	Started  time.Time      `json:"started"`
	Ended    time.Time      `json:"ended"`
	Devices  []deliveryView `json:"devices"`
}

func terminal(state string) bool {
	switch state {
	case "done", "stopped", "failed", "interrupted":
		return true
	}
	return false
}

// cmdBroadcast starts a broadcast of a file or text and follows it with a
// progress line until it ends; `broadcast show ID` prints one.
func cmdBroadcast(ctx context.Context, c *cli, args []string) error {
	if len(args) == 2 && args[0] == "show" {
		var b broadcastView
		if err := c.json(ctx, "GET", "/api/v1/broadcasts/"+args[1], nil, &b); err != nil {
			return err
		}
		printBroadcast(c.out, b)
		return nil
	}
	if len(args) == 2 && args[0] == "stop" {
		return c.json(ctx, "DELETE", "/api/v1/broadcasts/"+args[1], nil, nil)
	}
	fs := flag.NewFlagSet("broadcast", flag.ContinueOnError)
	zones := fs.String("zones", "", "comma-separated zones (required)")
	text := fs.String("text", "", "text to speak instead of a file")
	priority := fs.String("priority", "normal", "background, normal, priority or emergency")
	volume := fs.Int("volume", 0, "volume 1–100 (0 keeps each speaker's own)")
	noWait := fs.Bool("no-wait", false, "return once started")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *zones == "" || (*text == "") == (fs.NArg() != 1) {
		return errors.New("usage: loalang broadcast --zones a,b [--priority P] [--volume V] FILE | --text \"...\"")
	}
	req := map[string]any{"zones": strings.Split(*zones, ","), "priority": *priority, "volume": *volume}
	if *text != "" {
		req["text"] = *text
	} else {
		info, err := c.upload(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		req["media_id"] = info.ID
	}
	var b broadcastView
	if err := c.json(ctx, "POST", "/api/v1/broadcasts", req, &b); err != nil {
		return fmt.Errorf("broadcast: %w", err)
	}
	fmt.Fprintf(c.out, "broadcast %s %s\n", b.ID, b.State)
	if *noWait {
		return nil
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	// Follow until the broadcast ends and the speakers' final reports are
	// in (they arrive shortly after the last frame plays), or give up on
	// the reports a few seconds after the end.
	var endedAt time.Time
	for !terminal(b.State) || (!reported(b) && time.Since(endedAt) < 5*time.Second) {
		select {
		case <-ctx.Done():
			fmt.Fprintln(c.out)
			return ctx.Err()
		case <-t.C:
		}
		if err := c.json(ctx, "GET", "/api/v1/broadcasts/"+b.ID, nil, &b); err != nil {
			return err
		}
		if terminal(b.State) && endedAt.IsZero() {
			endedAt = time.Now()
		}
		var played uint64
		for _, d := range b.Devices {
			played += d.Played
		}
		pct := 0.0
		if expected := uint64(b.Packets) * uint64(len(b.Devices)); expected > 0 {
			pct = 100 * float64(played) / float64(expected)
		}
		fmt.Fprintf(c.out, "\r%-8s %5.1f%% of %d speakers' frames played", b.State, pct, len(b.Devices))
	}
	fmt.Fprintln(c.out)
	printBroadcast(c.out, b)
	return nil
}

// reported reports whether every speaker's report covers the whole broadcast.
func reported(b broadcastView) bool {
	for _, d := range b.Devices {
		if d.Expected < uint64(b.Packets) {
			return false
		}
	}
	return true
}

func printBroadcast(w io.Writer, b broadcastView) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s  %s %s  zones %s  priority %s  by %s\n", b.ID, b.State, b.Reason, strings.Join(b.Zones, ","), b.Priority, b.Actor)
	rows := [][]string{{"SPEAKER", "EXPECTED", "PLAYED", "LATE", "LOST"}}
	for _, d := range b.Devices {
		rows = append(rows, []string{d.ID, fmt.Sprint(d.Expected), fmt.Sprint(d.Played), fmt.Sprint(d.Late), fmt.Sprint(d.Lost)})
	}
	printTable(&buf, rows)
	w.Write(buf.Bytes())
}

func cmdStopAll(ctx context.Context, c *cli, args []string) error {
	var resp struct {
		Stopped int `json:"stopped"`
	}
	if err := c.json(ctx, "POST", "/api/v1/broadcasts/stop-all", nil, &resp); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "stopped %d broadcasts\n", resp.Stopped)
	return nil
}
