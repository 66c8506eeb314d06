package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

func init() {
	register(newLogin)
	register(newLogout)
	register(newWhoami)
	register(newPasswd)
}

func newLogin(c *cli) *cobra.Command {
	var user, pwFile string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in and store the token for the next commands",
		Long: `Sign in with a user name and password (read from --password-file, or one line
of standard input) and store the server URL and token in
$XDG_CONFIG_HOME/loalang/cli.json, mode 0600.`,
		Example: `  loalang --server http://127.0.0.1:8080 login --password-file var/demo/initial-admin-password
  echo "$PW" | loalang login --username truongthon --password-file -`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			pw, err := c.readSecret(pwFile, "password")
			if err != nil {
				return err
			}
			var resp api.LoginResponse
			if err := c.json(cmd.Context(), "POST", "/api/v1/login", api.LoginRequest{Username: user, Password: pw}, &resp); err != nil {
				return fmt.Errorf("login: %w", err)
			}
			c.sess.Token = resp.Token
			if err := c.saveSession(); err != nil {
				return fmt.Errorf("save token: %w", err)
			}
			return c.emit(map[string]any{"server": c.sess.Server, "username": user, "expires": resp.Expires}, func() {
				fmt.Fprintf(c.out, "logged in to %s as %s\n", c.sess.Server, user)
			})
		}),
	}
	cmd.Flags().StringVar(&user, "username", "admin", "user name")
	cmd.Flags().StringVar(&pwFile, "password-file", "", "read the password from this file (- for standard input without a prompt)")
	return cmd
}

func newLogout(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "End the session and forget the stored token",
		Example: `  loalang logout`,
		Args:    cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := c.json(cmd.Context(), "POST", "/api/v1/logout", nil, nil); err != nil {
				return fmt.Errorf("logout: %w", err)
			}
			c.sess.Token = ""
			if err := c.saveSession(); err != nil {
				return err
			}
			return c.emit(map[string]any{"logged_out": true}, func() { fmt.Fprintln(c.out, "logged out") })
		}),
	}
}

func newWhoami(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the signed-in user and role",
		Example: `  loalang whoami
  loalang --json whoami | jq -r .role`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var u api.User
			if err := c.json(cmd.Context(), "GET", "/api/v1/me", nil, &u); err != nil {
				return err
			}
			return c.emit(u, func() { fmt.Fprintf(c.out, "%s (%s) on %s\n", u.Username, u.Role, c.sess.Server) })
		}),
	}
}

func newPasswd(c *cli) *cobra.Command {
	var oldFile, newFile string
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "Change your own password (your other sessions end)",
		Long: `Change your own password. The old and new passwords come from files, or from
standard input (the old one on the first line, the new one on the second).`,
		Example: `  loalang passwd
  loalang passwd --old-password-file old.txt --new-password-file new.txt`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			old, err := c.readSecret(oldFile, "old password")
			if err != nil {
				return err
			}
			nw, err := c.readSecret(newFile, "new password")
			if err != nil {
				return err
			}
			if err := c.json(cmd.Context(), "PUT", "/api/v1/me/password", api.PasswordChange{Old: old, New: nw}, nil); err != nil {
				return fmt.Errorf("change password: %w", err)
			}
			return c.emit(map[string]any{"changed": true}, func() { fmt.Fprintln(c.out, "password changed") })
		}),
	}
	cmd.Flags().StringVar(&oldFile, "old-password-file", "", "read the old password from this file")
	cmd.Flags().StringVar(&newFile, "new-password-file", "", "read the new password from this file")
	return cmd
}
