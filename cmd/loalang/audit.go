package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

func init() { register(newAudit) }

// parseWhen reads a --since/--until value: RFC 3339, a date (local
// midnight) or a duration back from now ("24h").
func parseWhen(flag, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.Format(time.RFC3339), nil
	}
	if t, err := time.ParseInLocation("2006-01-02", v, time.Local); err == nil {
		return t.Format(time.RFC3339), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d).Format(time.RFC3339), nil
	}
	return "", usagef("--%s: %q is not an RFC 3339 time, a date (2026-03-01) or a duration (24h)", flag, v)
}

func newAudit(c *cli) *cobra.Command {
	var since, until, output string
	var limit int
	var csv bool
	cmd := &cobra.Command{
		Use:   "audit [--since T] [--until T] [--csv [--output FILE]]",
		Short: "Show or export the audit trail (admin)",
		Long: `Show the audit trail: who did what, when (sign-ins, broadcasts, changes to
users, cameras and schedules, devices going on- and offline). --csv exports
it as CSV (cells that would start a spreadsheet formula get a leading '),
--json as JSON.`,
		Example: `  loalang audit --since 24h
  loalang audit --since 2026-03-01 --until 2026-04-01 --csv --output audit-march.csv
  loalang --json audit --limit 100 | jq '.[] | select(.action == "user.login.failed")'`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if csv && c.jsonOut {
				return usagef("--csv and --json: choose one")
			}
			if output != "" && !csv {
				return usagef("--output is for --csv")
			}
			q := url.Values{}
			for _, p := range []struct{ flag, v string }{{"since", since}, {"until", until}} {
				t, err := parseWhen(p.flag, p.v)
				if err != nil {
					return err
				}
				if t != "" {
					q.Set(p.flag, t)
				}
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if csv {
				q.Set("format", "csv")
				w := c.out
				if output != "" {
					f, err := os.OpenFile(output, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
					if err != nil {
						return err
					}
					defer f.Close()
					w = f
				}
				if err := c.do(cmd.Context(), "GET", "/api/v1/audit?"+q.Encode(), "", nil, w); err != nil {
					return fmt.Errorf("export audit: %w", err)
				}
				if output != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", output)
				}
				return nil
			}
			var events []api.AuditEvent
			if err := c.json(cmd.Context(), "GET", "/api/v1/audit?"+q.Encode(), nil, &events); err != nil {
				return err
			}
			return c.emit(events, func() {
				rows := [][]string{{"TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"}}
				for _, e := range events {
					detail := ""
					if e.Detail != nil {
						raw, _ := json.Marshal(e.Detail)
						detail = string(raw)
					}
					rows = append(rows, []string{e.Time.Local().Format("2006-01-02 15:04:05"), e.Actor, e.Action, orDash(e.Target), detail})
				}
				printTable(c.out, rows)
			})
		}),
	}
	cmd.Flags().StringVar(&since, "since", "", "from this time: RFC 3339, a date (2026-03-01) or a duration back from now (24h)")
	cmd.Flags().StringVar(&until, "until", "", "up to this time (same forms)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many entries (the server's default: 10000)")
	cmd.Flags().BoolVar(&csv, "csv", false, "export as CSV")
	cmd.Flags().StringVarP(&output, "output", "o", "", "with --csv: write to this file (mode 0600) instead of standard output")
	return cmd
}
