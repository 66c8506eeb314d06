// Command loalang is the operator's CLI, a thin client of loalangd's HTTP
// API (its types come from web/api, shared with the server).
//
//	loalang [--server URL] [--json] COMMAND ...
//	loalang login --password-file FILE
//	loalang devices | users | cameras | audit | hall | media | broadcast | schedules ...
//	loalang completion bash|zsh|fish
//
// `loalang --help` and `loalang COMMAND --help` list the commands, flags and
// examples. Exit codes (see exitCode): 0 ok, 1 error, 2 usage, 3 not signed
// in or not allowed, 4 not found or conflict. docs/cli.md has the details.
//
// The server URL and token are kept in $XDG_CONFIG_HOME/loalang/cli.json
// (mode 0600) after login; LOALANG_SERVER and LOALANG_TOKEN override them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
)

// Exit codes, documented in docs/cli.md and `loalang --help`.
const (
	exitOK       = 0
	exitError    = 1 // the server refused the request, or it could not be sent
	exitUsage    = 2 // bad flags or arguments; nothing was sent
	exitAuth     = 3 // not signed in, the session ended, or the role may not do this
	exitNotFound = 4 // no such item, or it already exists / is in use
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout)
	stop()
	if err != nil {
		printError(os.Stderr, err, jsonRequested(os.Args[1:]))
	}
	os.Exit(exitCode(err))
}

// run is main without globals; the error decides the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	c := &cli{getenv: getenv, out: stdout, in: stdin}
	root := newRoot(c)
	root.SetArgs(args)
	_, err := root.ExecuteContextC(ctx)
	if err != nil && !isClassified(err) {
		// Cobra's own errors (unknown command or flag, wrong number of
		// arguments) are usage errors.
		err = &usageError{err}
	}
	return err
}

// usageError is a command line that could not be understood: exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef makes a usage error.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// errNotSignedIn is returned before a request that needs a token when
// there is none.
var errNotSignedIn = errors.New("not signed in: run `loalang login` (or set LOALANG_TOKEN)")

// runError marks an error that happened while running a command (not
// while parsing its command line).
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

func isClassified(err error) bool {
	var u *usageError
	var r *runError
	return errors.As(err, &u) || errors.As(err, &r)
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var u *usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	if errors.Is(err, errNotSignedIn) {
		return exitAuth
	}
	var a *apiError
	if errors.As(err, &a) {
		switch a.Status {
		case 401, 403:
			return exitAuth
		case 404, 409:
			return exitNotFound
		}
	}
	return exitError
}

// printError reports err on w, as JSON when the command line asked for it.
func printError(w io.Writer, err error, asJSON bool) {
	if !asJSON {
		fmt.Fprintln(w, "loalang:", err)
		return
	}
	v := map[string]any{"error": err.Error(), "exit_code": exitCode(err)}
	var a *apiError
	if errors.As(err, &a) {
		v["status"] = a.Status
		if a.Field != "" {
			v["field"] = a.Field
		}
	}
	json.NewEncoder(w).Encode(v)
}

// jsonRequested reports whether --json is on the command line (for
// errors that happen before or during flag parsing).
func jsonRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

const rootLong = `loalang is the operator's command line for loalangd, the village hall's
loudspeaker and camera controller. It talks to the daemon's HTTP API with the
token 'loalang login' stores (mode 0600 in $XDG_CONFIG_HOME/loalang/cli.json);
LOALANG_SERVER and LOALANG_TOKEN override it.

Every command takes --json to print the API's JSON for scripts (errors too,
on standard error).

Exit codes:
  0  ok
  1  error: the server refused the request (bad input, busy, unavailable) or could not be reached
  2  usage: unknown command or flag, missing or extra arguments; nothing was sent
  3  auth: not signed in, the session ended, or your role may not do this
  4  not found, or a conflict (already exists, in use, changed meanwhile)`

const rootExample = `  loalang --server http://127.0.0.1:8080 login --password-file var/demo/initial-admin-password
  loalang devices
  loalang --json cameras list | jq '.[].id'
  loalang completion bash > /etc/bash_completion.d/loalang`

// newRoot builds the command tree. Each command file registers its
// commands with register in an init function; a new command group (such as
// an uplink command) is one more file doing the same.
func newRoot(c *cli) *cobra.Command {
	root := &cobra.Command{
		Use:           "loalang",
		Short:         "Operate a loalang village hall controller from the command line",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return c.setup()
		},
	}
	root.PersistentFlags().StringVar(&c.server, "server", "", "loalangd URL, e.g. http://127.0.0.1:8080 (default: the one you logged in to)")
	root.PersistentFlags().BoolVar(&c.insecure, "insecure", false, "accept a self-signed certificate (check its fingerprint first)")
	root.PersistentFlags().BoolVar(&c.jsonOut, "json", false, "print the API's JSON instead of tables, for scripts")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{err} })
	for _, g := range groups {
		root.AddCommand(g(c))
	}
	root.SetIn(c.in)
	root.SetOut(c.out)
	root.SetErr(c.out)
	// The built-in commands, added now rather than on Execute so that the
	// tree (and TestEveryCommandHasHelp) sees them: `completion bash|zsh|
	// fish|powershell` and `help`.
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	return root
}

// groups are the top-level commands, added by each command file's init.
var groups []func(*cli) *cobra.Command

func register(g func(*cli) *cobra.Command) { groups = append(groups, g) }

// wrap turns a command's RunE error into a runError (exit 1, 3 or 4),
// keeping usage errors as they are.
func wrap(f func(cmd *cobra.Command, args []string) error) func(cmd *cobra.Command, args []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd, args)
		if err == nil || isClassified(err) {
			return err
		}
		return &runError{err}
	}
}
