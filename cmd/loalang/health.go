package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

func init() { register(newHealth) }

// errDegraded is the exit status 1 of `loalang health` on a degraded daemon.
var errDegraded = fmt.Errorf("degraded")

func newHealth(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Check the daemon's health (no sign-in needed); exit 1 when a part is down",
		Long: `Ask /healthz whether every part of the daemon runs (the store, the broker,
the scheduler, the hall output, …). Prints "ok", or each part that is down,
why and since when, and then exits 1: usable from cron or a monitoring check.`,
		Example: `  loalang health
  loalang --server http://10.0.0.2:8080 --json health | jq -r '.problems[].component'`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			req, err := http.NewRequestWithContext(cmd.Context(), "GET", strings.TrimRight(c.sess.Server, "/")+"/healthz", nil)
			if err != nil {
				return err
			}
			resp, err := c.http.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			h := api.Health{Status: "ok", Problems: nil}
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusServiceUnavailable:
				if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
					return fmt.Errorf("healthz: %w", err)
				}
			default:
				return &apiError{Status: resp.StatusCode, Msg: "unexpected answer from /healthz"}
			}
			if err := c.emit(h, func() {
				if len(h.Problems) == 0 {
					fmt.Fprintln(c.out, "ok")
					return
				}
				rows := [][]string{{"COMPONENT", "SINCE", "REASON"}}
				for _, p := range h.Problems {
					rows = append(rows, []string{p.Component, p.Since.Local().Format("2006-01-02 15:04:05"), p.Reason})
				}
				printTable(c.out, rows)
			}); err != nil {
				return err
			}
			if len(h.Problems) > 0 {
				return fmt.Errorf("%w: %d parts down", errDegraded, len(h.Problems))
			}
			return nil
		}),
	}
}
