package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

func init() {
	commands = append(commands, subcommand{"schedules", cmdSchedules})
}

const schedulesUsage = "usage: loalang schedules list | show ID | next ID [-n N] | firings ID | create --file F.json | delete ID"

// scheduleRow is the part of a schedule the list shows.
type scheduleRow struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	At       string   `json:"at"`
	RRule    string   `json:"rrule"`
	Cron     string   `json:"cron"`
	Zones    []string `json:"zones"`
	Priority string   `json:"priority"`
	Enabled  *bool    `json:"enabled"`
	Next     string   `json:"next"`
	Source   struct {
		Kind string `json:"kind"`
	} `json:"source"`
}

func cmdSchedules(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		args = []string{"list"}
	}
	switch args[0] {
	case "list":
		var list []scheduleRow
		if err := c.json(ctx, "GET", "/api/v1/schedules", nil, &list); err != nil {
			return err
		}
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
		return nil
	case "show":
		if len(args) != 2 {
			return errors.New(schedulesUsage)
		}
		return c.printJSON(ctx, "/api/v1/schedules/"+url.PathEscape(args[1]))
	case "firings":
		if len(args) != 2 {
			return errors.New(schedulesUsage)
		}
		var list []struct {
			Occurrence time.Time `json:"occurrence"`
			Fired      time.Time `json:"fired"`
			Outcome    string    `json:"outcome"`
			Detail     string    `json:"detail"`
		}
		if err := c.json(ctx, "GET", "/api/v1/schedules/"+url.PathEscape(args[1])+"/firings", nil, &list); err != nil {
			return err
		}
		rows := [][]string{{"OCCURRENCE", "ACTED", "OUTCOME", "DETAIL"}}
		for _, f := range list {
			rows = append(rows, []string{f.Occurrence.Local().Format(time.RFC3339), f.Fired.Local().Format("15:04:05.000"), f.Outcome, f.Detail})
		}
		printTable(c.out, rows)
		return nil
	case "next":
		fs := flag.NewFlagSet("schedules next", flag.ContinueOnError)
		n := fs.Int("n", 5, "how many occurrences")
		if len(args) < 2 {
			return errors.New(schedulesUsage)
		}
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		var resp struct {
			Next []string `json:"next"`
		}
		if err := c.json(ctx, "GET", "/api/v1/schedules/"+url.PathEscape(args[1])+"/next?n="+strconv.Itoa(*n), nil, &resp); err != nil {
			return err
		}
		if len(resp.Next) == 0 {
			fmt.Fprintln(c.out, "no further occurrences")
		}
		for _, t := range resp.Next {
			fmt.Fprintln(c.out, t)
		}
		return nil
	case "create":
		fs := flag.NewFlagSet("schedules create", flag.ContinueOnError)
		file := fs.String("file", "", "JSON schedule (see docs/scheduling.md); - reads standard input")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *file == "" {
			return errors.New(schedulesUsage)
		}
		var raw []byte
		var err error
		if *file == "-" {
			var b bytes.Buffer
			_, err = b.ReadFrom(c.in)
			raw = b.Bytes()
		} else {
			raw, err = os.ReadFile(*file)
		}
		if err != nil {
			return err
		}
		if !json.Valid(raw) {
			return fmt.Errorf("%s: not valid JSON", *file)
		}
		var created scheduleRow
		if err := c.do(ctx, "POST", "/api/v1/schedules", "application/json", bytes.NewReader(raw), &created); err != nil {
			return fmt.Errorf("create schedule: %w", err)
		}
		fmt.Fprintf(c.out, "created %s; next %s\n", created.ID, orDash(created.Next))
		return nil
	case "delete":
		if len(args) != 2 {
			return errors.New(schedulesUsage)
		}
		if err := c.do(ctx, "DELETE", "/api/v1/schedules/"+url.PathEscape(args[1]), "", nil, nil); err != nil {
			return fmt.Errorf("delete %s: %w", args[1], err)
		}
		fmt.Fprintf(c.out, "deleted %s\n", args[1])
		return nil
	}
	return errors.New(schedulesUsage)
}

// printJSON prints an API answer indented.
func (c *cli) printJSON(ctx context.Context, path string) error {
	var v json.RawMessage
	if err := c.json(ctx, "GET", path, nil, &v); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, v, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := c.out.Write(out.Bytes())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
