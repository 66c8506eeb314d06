package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/web/api"
)

func init() { register(newUsers) }

func newUsers(c *cli) *cobra.Command {
	cmd := group("users", "Manage users: admins, village heads and police (admin only)",
		`Users and their roles: admin (everything), head (broadcasts, schedules,
devices) and police (the cameras listed for them). Passwords are read from a
file or standard input, never from the command line.`,
		`  loalang users list
  loalang users add truongthon --role head --password-file pw.txt
  loalang users set congan --cameras cam-01,cam-02
  loalang users remove truongthon`)
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the users",
		Example: `  loalang users list`,
		Args:    cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var users []api.User
			if err := c.json(cmd.Context(), "GET", "/api/v1/users", nil, &users); err != nil {
				return err
			}
			return c.emit(users, func() {
				rows := [][]string{{"USERNAME", "ROLE", "CAMERAS", "CREATED"}}
				for _, u := range users {
					rows = append(rows, []string{u.Username, string(u.Role), orDash(strings.Join(u.Cameras, ",")), u.CreatedAt.Local().Format("2006-01-02 15:04")})
				}
				printTable(c.out, rows)
			})
		}),
	}
	cmd.RunE = list.RunE

	var role, cameras, pwFile string
	add := &cobra.Command{
		Use:   "add USERNAME --role admin|head|police",
		Short: "Create a user",
		Example: `  loalang users add truongthon --role head --password-file pw.txt
  loalang users add congan --role police --cameras cam-01,cam-02 < pw.txt`,
		Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if !auth.Role(role).Valid() {
				return usagef("--role: %q is not admin, head or police", role)
			}
			pw, err := c.readSecret(pwFile, "password for "+args[0])
			if err != nil {
				return err
			}
			req := api.UserRequest{Username: args[0], Password: pw, Role: auth.Role(role), Cameras: splitList(cameras)}
			var u api.User
			if err := c.json(cmd.Context(), "POST", "/api/v1/users", req, &u); err != nil {
				return fmt.Errorf("add user %s: %w", args[0], err)
			}
			return c.emit(u, func() { fmt.Fprintf(c.out, "created %s (%s)\n", u.Username, u.Role) })
		}),
	}
	add.Flags().StringVar(&role, "role", "", "admin, head or police (required)")
	add.Flags().StringVar(&cameras, "cameras", "", "police: comma-separated cameras they may watch")
	add.Flags().StringVar(&pwFile, "password-file", "", "read the password from this file (default: standard input)")
	add.MarkFlagRequired("role")
	add.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"admin", "head", "police"}, cobra.ShellCompDirectiveNoFileComp))

	var setRole, setCameras, setPwFile string
	var setPassword bool
	set := &cobra.Command{
		Use:   "set USERNAME [--role R] [--cameras LIST] [--password-file F | --password]",
		Short: "Change a user's role, cameras or password (a new password ends their sessions)",
		Example: `  loalang users set congan --cameras cam-01
  loalang users set truongthon --password-file new.txt`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeFrom("/api/v1/users", "username"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var upd api.UserUpdate
			if cmd.Flags().Changed("role") {
				r := auth.Role(setRole)
				if !r.Valid() {
					return usagef("--role: %q is not admin, head or police", setRole)
				}
				upd.Role = &r
			}
			if cmd.Flags().Changed("cameras") {
				l := splitList(setCameras)
				if l == nil {
					l = []string{}
				}
				upd.Cameras = &l
			}
			if setPwFile != "" || setPassword {
				pw, err := c.readSecret(setPwFile, "new password for "+args[0])
				if err != nil {
					return err
				}
				upd.Password = &pw
			}
			if upd == (api.UserUpdate{}) {
				return usagef("users set: nothing to change (give --role, --cameras or a password)")
			}
			var u api.User
			if err := c.json(cmd.Context(), "PUT", "/api/v1/users/"+url.PathEscape(args[0]), upd, &u); err != nil {
				return fmt.Errorf("change user %s: %w", args[0], err)
			}
			return c.emit(u, func() {
				fmt.Fprintf(c.out, "changed %s (%s, cameras %s)\n", u.Username, u.Role, orDash(strings.Join(u.Cameras, ",")))
			})
		}),
	}
	set.Flags().StringVar(&setRole, "role", "", "admin, head or police")
	set.Flags().StringVar(&setCameras, "cameras", "", "comma-separated cameras (empty: none)")
	set.Flags().StringVar(&setPwFile, "password-file", "", "read a new password from this file")
	set.Flags().BoolVar(&setPassword, "password", false, "read a new password from standard input")
	set.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"admin", "head", "police"}, cobra.ShellCompDirectiveNoFileComp))

	remove := &cobra.Command{
		Use:               "remove USERNAME",
		Aliases:           []string{"rm", "delete"},
		Short:             "Delete a user (the last admin cannot be removed)",
		Example:           `  loalang users remove truongthon`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeFrom("/api/v1/users", "username"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := c.json(cmd.Context(), "DELETE", "/api/v1/users/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return fmt.Errorf("remove user %s: %w", args[0], err)
			}
			return c.emit(map[string]any{"username": args[0], "removed": true}, func() { fmt.Fprintf(c.out, "removed %s\n", args[0]) })
		}),
	}
	cmd.AddCommand(list, add, set, remove)
	return cmd
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
