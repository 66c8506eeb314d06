package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

func init() { register(newSchedules) }

func newSchedules(c *cli) *cobra.Command {
	cmd := group("schedules", "Manage the broadcast timetable",
		`The timetable: each schedule says when (at, rrule or cron), where (zones) and
what (a media id, text to speak, or a relay of a radio stream). Schedules are
JSON documents as docs/scheduling.md describes; 'show' prints one in the form
'create' and 'update' take.`,
		`  loalang schedules
  loalang schedules create --file sang.json
  loalang schedules next sang -n 3
  loalang schedules show sang > sang.json && vi sang.json && loalang schedules update sang --file sang.json`)
	complete := c.completeFrom("/api/v1/schedules", "id")
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the schedules with their next firing (the default)",
		Example: `  loalang schedules list`,
		Args:    cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var list []api.Schedule
			if err := c.json(cmd.Context(), "GET", "/api/v1/schedules", nil, &list); err != nil {
				return err
			}
			return c.emit(list, func() {
				rows := [][]string{{"ID", "WHEN", "ZONES", "PRIORITY", "SOURCE", "ON", "NEXT", "NAME"}}
				for _, s := range list {
					when := s.At
					if s.RRule != "" {
						when = s.RRule
					} else if s.Cron != "" {
						when = "cron " + s.Cron
					}
					on := "yes"
					if s.Enabled != nil && !*s.Enabled {
						on = "no"
					}
					rows = append(rows, []string{s.ID, when, strings.Join(s.Zones, ","), s.Priority, s.Source.Kind, on, orDash(s.Next), s.Name})
				}
				printTable(c.out, rows)
			})
		}),
	}
	cmd.RunE = list.RunE
	show := &cobra.Command{
		Use:               "show ID",
		Short:             "Print a schedule as JSON (the form create and update take)",
		Example:           `  loalang schedules show sang`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var s api.Schedule
			if err := c.json(cmd.Context(), "GET", "/api/v1/schedules/"+url.PathEscape(args[0]), nil, &s); err != nil {
				return err
			}
			c.jsonOut = true // a schedule is shown as the JSON it is edited as
			return c.emit(s, nil)
		}),
	}
	var n int
	next := &cobra.Command{
		Use:               "next ID [-n N]",
		Short:             "Show the next firings of a schedule",
		Example:           `  loalang schedules next sang -n 3`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var resp api.ScheduleNext
			if err := c.json(cmd.Context(), "GET", "/api/v1/schedules/"+url.PathEscape(args[0])+"/next?n="+strconv.Itoa(n), nil, &resp); err != nil {
				return err
			}
			return c.emit(resp, func() {
				if len(resp.Next) == 0 {
					fmt.Fprintln(c.out, "no further occurrences")
				}
				for _, t := range resp.Next {
					fmt.Fprintln(c.out, t)
				}
			})
		}),
	}
	next.Flags().IntVarP(&n, "n", "n", 5, "how many occurrences")
	firings := &cobra.Command{
		Use:               "firings ID",
		Short:             "Show the firing log of a schedule: played, skipped, missed",
		Example:           `  loalang schedules firings sang`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var list []api.Firing
			if err := c.json(cmd.Context(), "GET", "/api/v1/schedules/"+url.PathEscape(args[0])+"/firings", nil, &list); err != nil {
				return err
			}
			return c.emit(list, func() {
				rows := [][]string{{"OCCURRENCE", "ACTED", "OUTCOME", "DETAIL"}}
				for _, f := range list {
					rows = append(rows, []string{f.Occurrence.Local().Format(time.RFC3339), f.Fired.Local().Format("15:04:05.000"), f.Outcome, f.Detail})
				}
				printTable(c.out, rows)
			})
		}),
	}
	var file string
	readFile := func() ([]byte, error) {
		if file == "" {
			return nil, usagef("--file is required (- reads standard input)")
		}
		var raw []byte
		var err error
		if file == "-" {
			var b bytes.Buffer
			_, err = b.ReadFrom(c.in)
			raw = b.Bytes()
		} else {
			raw, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, err
		}
		if !json.Valid(raw) {
			return nil, fmt.Errorf("%s: not valid JSON", file)
		}
		return raw, nil
	}
	create := &cobra.Command{
		Use:   "create --file F.json",
		Short: "Create a schedule from a JSON file",
		Example: `  loalang schedules create --file sang.json
  echo '{"id":"sang","name":"Bản tin sáng","rrule":"FREQ=DAILY;BYHOUR=6;BYMINUTE=30","zones":["xom-dong"],"source":{"kind":"text","text":"Xin chào bà con"}}' | loalang schedules create --file -`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			raw, err := readFile()
			if err != nil {
				return err
			}
			var created api.Schedule
			if err := c.do(cmd.Context(), "POST", "/api/v1/schedules", "application/json", bytes.NewReader(raw), &created); err != nil {
				return fmt.Errorf("create schedule: %w", err)
			}
			return c.emit(created, func() { fmt.Fprintf(c.out, "created %s; next %s\n", created.ID, orDash(created.Next)) })
		}),
	}
	create.Flags().StringVar(&file, "file", "", "JSON schedule (see docs/scheduling.md); - reads standard input")
	update := &cobra.Command{
		Use:               "update ID --file F.json",
		Short:             "Replace a schedule with a JSON file (its version must match: edits are not lost)",
		Example:           `  loalang schedules show sang > sang.json && loalang schedules update sang --file sang.json`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			raw, err := readFile()
			if err != nil {
				return err
			}
			var updated api.Schedule
			if err := c.do(cmd.Context(), "PUT", "/api/v1/schedules/"+url.PathEscape(args[0]), "application/json", bytes.NewReader(raw), &updated); err != nil {
				return fmt.Errorf("update schedule %s: %w", args[0], err)
			}
			return c.emit(updated, func() { fmt.Fprintf(c.out, "updated %s; next %s\n", updated.ID, orDash(updated.Next)) })
		}),
	}
	update.Flags().StringVar(&file, "file", "", "JSON schedule; - reads standard input")
	remove := &cobra.Command{
		Use:               "delete ID",
		Aliases:           []string{"remove", "rm"},
		Short:             "Delete a schedule",
		Example:           `  loalang schedules delete sang`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := c.do(cmd.Context(), "DELETE", "/api/v1/schedules/"+url.PathEscape(args[0]), "", nil, nil); err != nil {
				return fmt.Errorf("delete %s: %w", args[0], err)
			}
			return c.emit(map[string]any{"id": args[0], "deleted": true}, func() { fmt.Fprintf(c.out, "deleted %s\n", args[0]) })
		}),
	}
	cmd.AddCommand(list, show, next, firings, create, update, remove)
	return cmd
}
