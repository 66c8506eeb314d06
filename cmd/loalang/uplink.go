package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/uplink"
)

func init() { register(newUplink) }

// newUplink is `loalang uplink`: the link's state from the daemon, and the
// upstream operator's key and signing tools (uplink.Main), which need no
// server.
func newUplink(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "uplink",
		Short: "The link to the commune and province: its state, and the operator's signing tools",
		Example: `  loalang uplink status
  loalang uplink keygen -out province.key`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the uplink: connected, outbox depth and age, last error, commands seen",
		Example: `  loalang uplink status
  loalang --json uplink status | jq .outbox`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var s uplink.Status
			if err := c.json(cmd.Context(), "GET", "/api/v1/uplink", nil, &s); err != nil {
				return err
			}
			return c.emit(s, func() {
				if !s.Enabled {
					fmt.Fprintln(c.out, "uplink: not configured")
					return
				}
				state := "disconnected"
				if s.Connected {
					state = "connected"
				}
				fmt.Fprintf(c.out, "uplink:  %s to %s (%d connects)\n", state, s.Broker, s.Connects)
				fmt.Fprintf(c.out, "outbox:  %+v, oldest pending %s\n", s.Outbox, (time.Duration(s.OldestPendingSeconds) * time.Second).String())
				if s.LastError != "" {
					fmt.Fprintf(c.out, "last error: %s (%s)\n", s.LastError, s.LastErrorAt.Local().Format(time.DateTime))
				}
				var seen []string
				for k, n := range s.Commands {
					seen = append(seen, fmt.Sprintf("%s=%d", k, n))
				}
				slices.Sort(seen)
				fmt.Fprintf(c.out, "commands: %s\n", strings.Join(seen, " "))
			})
		}),
	})
	for _, sub := range []struct{ name, short, example string }{
		{"keygen", "Create an Ed25519 signing key (PKCS #8 PEM, mode 0600); prints the public key for the villages' config",
			"  loalang uplink keygen -out province.key"},
		{"sign", "Sign a broadcast command with a private key file (the upstream operator's tool, and the tests')",
			"  loalang uplink sign -key province.key -sender hn -text \"Bão số 3\" -urgency emergency > cmd.json"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:                sub.name + " [flags]",
			Short:              sub.short,
			Example:            sub.example,
			DisableFlagParsing: true, // uplink.Main parses them
			// No server: skip the root's session set-up.
			PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
			RunE: func(cmd *cobra.Command, args []string) error {
				if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
					// cobra's help, then the flags as uplink.Main defines them.
					if err := cmd.Help(); err != nil {
						return err
					}
					fmt.Fprintln(c.out, "\nFlags of "+sub.name+":")
					uplink.Main([]string{sub.name, "-h"}, io.Discard, c.out)
					return nil
				}
				return uplink.Main(append([]string{sub.name}, args...), c.out, cmd.ErrOrStderr())
			},
		})
	}
	return cmd
}
