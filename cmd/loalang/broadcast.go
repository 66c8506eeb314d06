package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/web/api"
)

func init() {
	register(newMedia)
	register(newBroadcast)
	register(newStopAll)
}

// upload sends a file to POST /api/v1/media as multipart field "file".
func (c *cli) upload(ctx context.Context, path string) (api.Media, error) {
	f, err := os.Open(path)
	if err != nil {
		return api.Media{}, err
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
	var info api.Media
	if err := c.do(ctx, "POST", "/api/v1/media", mw.FormDataContentType(), pr, &info); err != nil {
		return info, fmt.Errorf("upload %s: %w", path, err)
	}
	return info, nil
}

func newMedia(c *cli) *cobra.Command {
	cmd := group("media", "List and upload recordings (WAV, MP3, Ogg Opus…)",
		"The media library: recordings uploaded for broadcasts and schedules, stored as Opus.",
		`  loalang media
  loalang media upload ban-tin-sang.mp3`)
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the stored media (the default)",
		Example: `  loalang media list`,
		Args:    cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var list []api.Media
			if err := c.json(cmd.Context(), "GET", "/api/v1/media", nil, &list); err != nil {
				return err
			}
			return c.emit(list, func() {
				rows := [][]string{{"ID", "SECONDS", "SOURCE"}}
				for _, m := range list {
					rows = append(rows, []string{m.ID, fmt.Sprintf("%.1f", float64(m.DurationMS)/1000), m.SourceName})
				}
				printTable(c.out, rows)
			})
		}),
	}
	cmd.RunE = list.RunE
	upload := &cobra.Command{
		Use:     "upload FILE",
		Short:   "Upload a recording; prints its media id",
		Example: `  loalang media upload ban-tin-sang.wav`,
		Args:    cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			info, err := c.upload(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.emit(info, func() {
				fmt.Fprintf(c.out, "%s  %.1f s  %s\n", info.ID, float64(info.DurationMS)/1000, info.SourceName)
			})
		}),
	}
	show := &cobra.Command{
		Use:               "show ID",
		Short:             "Show one media item: source, duration, loudness",
		Example:           `  loalang media show d7d5d114…`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeFrom("/api/v1/media", "id"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var m api.Media
			if err := c.json(cmd.Context(), "GET", "/api/v1/media/"+url.PathEscape(args[0]), nil, &m); err != nil {
				return err
			}
			return c.emit(m, func() {
				fmt.Fprintf(c.out, "%s  %.1f s  %s  %d kbit/s %s  %.1f LUFS (gain %.1f dB)\n", m.ID, float64(m.DurationMS)/1000, m.SourceName,
					m.Bitrate/1000, m.Codec, m.LoudnessLUFS, m.GainDB)
			})
		}),
	}
	cmd.AddCommand(list, upload, show)
	return cmd
}

func newBroadcast(c *cli) *cobra.Command {
	var zones, text, priority string
	var volume int
	var noWait bool
	cmd := &cobra.Command{
		Use:   "broadcast --zones a,b (FILE | --text \"...\")",
		Short: "Broadcast a recording or spoken text now, and follow it to the end",
		Long: `Broadcast a recording (uploaded first) or text (spoken by espeak-ng) to the
zones, and follow it with a progress line until every speaker has reported;
--no-wait returns once it started. Subcommands list, show and stop the
broadcasts.`,
		Example: `  loalang broadcast --zones xom-dong,cho thong-bao.wav
  loalang broadcast --zones xom-dong --priority emergency --text "Bà con chú ý: nước lên"
  loalang --json broadcast --zones cho --no-wait --text "Họp thôn lúc 19 giờ" | jq -r .id`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("broadcast: one FILE at most")
			}
			return nil
		},
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if zones == "" || (text == "") == (len(args) != 1) {
				return usagef("usage: loalang broadcast --zones a,b [--priority P] [--volume V] FILE | --text \"...\"")
			}
			req := api.BroadcastRequest{Zones: splitList(zones), Priority: priority, Volume: volume, Text: text}
			if text == "" {
				info, err := c.upload(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				req.MediaID = info.ID
			}
			var b api.Broadcast
			if err := c.json(cmd.Context(), "POST", "/api/v1/broadcasts", req, &b); err != nil {
				return fmt.Errorf("broadcast: %w", err)
			}
			if noWait {
				return c.emit(b, func() { fmt.Fprintf(c.out, "broadcast %s %s\n", b.ID, b.State) })
			}
			if !c.jsonOut {
				fmt.Fprintf(c.out, "broadcast %s %s\n", b.ID, b.State)
			}
			b, err := c.follow(cmd.Context(), b)
			if err != nil {
				return err
			}
			return c.emit(b, func() { printBroadcast(c.out, b) })
		}),
	}
	cmd.Flags().StringVar(&zones, "zones", "", "comma-separated zones (required)")
	cmd.Flags().StringVar(&text, "text", "", "text to speak instead of a file")
	cmd.Flags().StringVar(&priority, "priority", "normal", "background, normal, priority or emergency")
	cmd.Flags().IntVar(&volume, "volume", 0, "volume 1–100 (0 keeps each speaker's own)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once started")
	cmd.RegisterFlagCompletionFunc("priority", cobra.FixedCompletions([]string{"background", "normal", "priority", "emergency"}, cobra.ShellCompDirectiveNoFileComp))

	list := &cobra.Command{
		Use:     "list",
		Short:   "List the recent broadcasts",
		Example: `  loalang broadcast list`,
		Args:    cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var list []api.Broadcast
			if err := c.json(cmd.Context(), "GET", "/api/v1/broadcasts", nil, &list); err != nil {
				return err
			}
			return c.emit(list, func() {
				rows := [][]string{{"ID", "STATE", "PRIORITY", "ZONES", "SOURCE", "BY", "CREATED"}}
				for _, b := range list {
					rows = append(rows, []string{b.ID, string(b.State), string(b.Priority), strings.Join(b.Zones, ","), b.Source, orDash(b.Actor), b.Created.Local().Format("2006-01-02 15:04:05")})
				}
				printTable(c.out, rows)
			})
		}),
	}
	show := &cobra.Command{
		Use:     "show ID",
		Short:   "Show a broadcast and its delivery per speaker",
		Example: `  loalang broadcast show b-1a2b3c`,
		Args:    cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var b api.Broadcast
			if err := c.json(cmd.Context(), "GET", "/api/v1/broadcasts/"+url.PathEscape(args[0]), nil, &b); err != nil {
				return err
			}
			return c.emit(b, func() { printBroadcast(c.out, b) })
		}),
	}
	stop := &cobra.Command{
		Use:     "stop ID",
		Short:   "Stop one broadcast",
		Example: `  loalang broadcast stop b-1a2b3c`,
		Args:    cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var b api.Broadcast
			if err := c.json(cmd.Context(), "DELETE", "/api/v1/broadcasts/"+url.PathEscape(args[0]), nil, &b); err != nil {
				return fmt.Errorf("stop %s: %w", args[0], err)
			}
			return c.emit(b, func() { fmt.Fprintf(c.out, "stopped %s\n", args[0]) })
		}),
	}
	cmd.AddCommand(list, show, stop)
	return cmd
}

// follow polls a broadcast until it ends and the speakers' final reports
// are in (they arrive shortly after the last frame plays), or a few seconds
// after the end, printing a progress line unless --json.
func (c *cli) follow(ctx context.Context, b api.Broadcast) (api.Broadcast, error) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var endedAt time.Time
	for !broadcast.Terminal(b.State) || (!reported(b) && time.Since(endedAt) < 5*time.Second) {
		select {
		case <-ctx.Done():
			fmt.Fprintln(c.out)
			return b, ctx.Err()
		case <-t.C:
		}
		if err := c.json(ctx, "GET", "/api/v1/broadcasts/"+b.ID, nil, &b); err != nil {
			return b, err
		}
		if broadcast.Terminal(b.State) && endedAt.IsZero() {
			endedAt = time.Now()
		}
		if c.jsonOut {
			continue
		}
		var played uint64
		for _, d := range b.Devices {
			played += d.FramesPlayed
		}
		pct := 0.0
		if expected := uint64(b.Packets) * uint64(len(b.Devices)); expected > 0 {
			pct = 100 * float64(played) / float64(expected)
		}
		fmt.Fprintf(c.out, "\r%-8s %5.1f%% of %d speakers' frames played", b.State, pct, len(b.Devices))
	}
	if !c.jsonOut {
		fmt.Fprintln(c.out)
	}
	return b, nil
}

// reported reports whether every speaker's report covers the whole broadcast.
func reported(b api.Broadcast) bool {
	for _, d := range b.Devices {
		if d.FramesExpected < uint64(b.Packets) {
			return false
		}
	}
	return true
}

func printBroadcast(w io.Writer, b api.Broadcast) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s  %s %s  zones %s  priority %s  by %s\n", b.ID, b.State, b.Reason, strings.Join(b.Zones, ","), b.Priority, b.Actor)
	rows := [][]string{{"SPEAKER", "EXPECTED", "PLAYED", "LATE", "LOST"}}
	for _, d := range b.Devices {
		rows = append(rows, []string{d.ID, fmt.Sprint(d.FramesExpected), fmt.Sprint(d.FramesPlayed), fmt.Sprint(d.FramesLate), fmt.Sprint(d.FramesLost)})
	}
	printTable(&buf, rows)
	w.Write(buf.Bytes())
}

func newStopAll(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "stop-all",
		Short:   "Stop every broadcast now (the kill switch)",
		Example: `  loalang stop-all`,
		Args:    cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var resp api.StopAllResponse
			if err := c.json(cmd.Context(), "POST", "/api/v1/broadcasts/stop-all", nil, &resp); err != nil {
				return err
			}
			return c.emit(resp, func() { fmt.Fprintf(c.out, "stopped %d broadcasts\n", resp.Stopped) })
		}),
	}
}
