package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

func init() { register(newHall) }

func newHall(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "hall",
		Short: "Show the hall's sound card and relay board: health, coils, alarms",
		Long: `Show the hall output: whether the sound card (the amplifier's input) works and
plays, and the relay board that powers the amplifier and switches the wired
zones: its port, alarm state and faults, and each coil.`,
		Example: `  loalang hall
  loalang --json hall | jq .board.alarm`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var h api.Hall
			if err := c.json(cmd.Context(), "GET", "/api/v1/hall", nil, &h); err != nil {
				return err
			}
			return c.emit(h, func() {
				state := func(configured, ok bool, reason string) string {
					switch {
					case !configured:
						return "not configured"
					case ok:
						return "ok"
					}
					return "FAULT: " + reason
				}
				fmt.Fprintf(c.out, "sound card:  %s", state(h.Sink.Configured, h.Sink.OK, h.Sink.Reason))
				if h.Sink.Playing {
					fmt.Fprint(c.out, ", playing")
				}
				fmt.Fprintln(c.out)
				fmt.Fprintf(c.out, "relay board: %s", state(h.Board.Configured, h.Board.OK, h.Board.Reason))
				if h.Board.Port != "" {
					fmt.Fprintf(c.out, " on %s", h.Board.Port)
				}
				if h.Board.Alarm {
					fmt.Fprintf(c.out, ", ALARM since %s", h.Board.Since.Local().Format("15:04:05"))
				}
				fmt.Fprintf(c.out, ", %d faults\n", h.Board.Faults)
				if len(h.Board.Coils) > 0 {
					var coils []string
					for name, on := range h.Board.Coils {
						s := "off"
						if on {
							s = "on"
						}
						coils = append(coils, name+"="+s)
					}
					slices.Sort(coils)
					fmt.Fprintf(c.out, "coils:       %s\n", strings.Join(coils, " "))
				}
			})
		}),
	}
}
