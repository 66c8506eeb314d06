package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

func init() { register(newDevices) }

func newDevices(c *cli) *cobra.Command {
	cmd := group("devices", "List the speakers and relay boards; ping them, set their volume",
		"The village's devices as the daemon sees them: online state, last report, firmware and volume.",
		`  loalang devices
  loalang devices ping spk-01
  loalang devices volume spk-01 70`)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the devices (the default)",
		Example: `  loalang devices list
  loalang --json devices list | jq '[.[] | select(.online | not) | .id]'`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var devs []api.Device
			if err := c.json(cmd.Context(), "GET", "/api/v1/devices", nil, &devs); err != nil {
				return err
			}
			return c.emit(devs, func() {
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
			})
		}),
	}
	cmd.RunE = list.RunE
	ping := &cobra.Command{
		Use:               "ping ID",
		Short:             "Ask a device to answer, and show the round trip",
		Example:           `  loalang devices ping spk-01`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeFrom("/api/v1/devices", "id"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var resp api.PingResponse
			if err := c.json(cmd.Context(), "POST", "/api/v1/devices/"+url.PathEscape(args[0])+"/ping", nil, &resp); err != nil {
				return fmt.Errorf("ping %s: %w", args[0], err)
			}
			return c.emit(resp, func() { fmt.Fprintf(c.out, "%s answered in %.1f ms\n", args[0], resp.RTTMS) })
		}),
	}
	volume := &cobra.Command{
		Use:               "volume ID LEVEL",
		Short:             "Set a speaker's own volume (0–100)",
		Example:           `  loalang devices volume spk-01 70`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: c.completeFrom("/api/v1/devices", "id"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[1])
			if err != nil || v < 0 || v > 100 {
				return usagef("volume: %q is not a number from 0 to 100", args[1])
			}
			var resp api.VolumeResponse
			if err := c.json(cmd.Context(), "POST", "/api/v1/devices/"+url.PathEscape(args[0])+"/volume", api.VolumeRequest{Volume: v}, &resp); err != nil {
				return fmt.Errorf("volume %s: %w", args[0], err)
			}
			return c.emit(resp, func() { fmt.Fprintf(c.out, "%s volume %d\n", resp.ID, resp.Volume) })
		}),
	}
	cmd.AddCommand(list, ping, volume)
	return cmd
}
