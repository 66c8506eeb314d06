// Command goals prints issue 16's performance goals as one table, judged
// against the figures in bench/results.json: for each goal the figure
// (median, and [min–max] over the runs where the results hold it), the
// baseline and the ratio where the goal has one, the target, met / NOT met
// / not measured, the results key, the date of the measurement and the
// command that produced it (or, for a goal not measured, the command that
// measures it). It reads only; a missing key is "not measured", never an
// error. scripts/bench.sh runs it at the end of `make bench`.
//
//	go run ./bench/goals [-results bench/results.json] [-markdown]
//
// -markdown prints the same table as Markdown (bench/README.md, "Issue 16
// goals").
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
)

func main() {
	path := flag.String("results", "bench/results.json", "results file to read")
	markdown := flag.Bool("markdown", false, "print the table as Markdown")
	flag.Parse()
	all, err := load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/goals:", err)
		os.Exit(1)
	}
	rows := Build(all)
	if *markdown {
		err = writeMarkdown(os.Stdout, rows)
	} else {
		err = writeText(os.Stdout, *path, rows)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/goals:", err)
		os.Exit(1)
	}
}

// load reads the results file. A missing file is an empty one: every
// goal is then "not measured".
func load(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]any{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	all := map[string]any{}
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return all, nil
}

// writeText prints the table for a terminal, then the commands grouped by
// command.
func writeText(w io.Writer, path string, rows []Row) error {
	fmt.Fprintf(w, "issue 16 goals, from %s; figures are medians over the runs, [min–max] where the results hold it\n", path)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tgoal\tfigure\tbaseline\tratio\ttarget\tstatus\tkey\tdate\tnote")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.ID, r.Goal, r.Figure, dash(r.Baseline), dash(r.Ratio), r.Target, r.Status, r.Key, r.Date, r.Note)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	fmt.Fprintln(w, "commands:")
	var order []string
	ids := map[string][]string{}
	for _, r := range rows {
		if _, seen := ids[r.Command]; !seen {
			order = append(order, r.Command)
		}
		ids[r.Command] = append(ids[r.Command], r.ID)
	}
	for _, c := range order {
		fmt.Fprintf(w, "  %s: %s\n", strings.Join(ids[c], ", "), c)
	}
	return nil
}

// writeMarkdown prints the table as Markdown, with the command in each row.
func writeMarkdown(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| # | goal | figure | baseline | ratio | target | status | key | date | command | note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		status := string(r.Status)
		if r.Status != NotMeasured {
			status = "**" + status + "**"
		}
		cells := []string{r.ID, cell(r.Goal), cell(r.Figure), cell(dash(r.Baseline)), cell(dash(r.Ratio)), cell(r.Target),
			status, "`" + r.Key + "`", r.Date, "`" + cell(r.Command) + "`", cell(r.Note)}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	return nil
}

// cell escapes a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
