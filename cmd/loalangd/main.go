// Command loalangd is the village hall's edge controller: it streams
// announcements to IP loudspeakers over MQTT, drives the hall's amplifier,
// relays cameras to the commune police and keeps its state in bbolt.
//
//	loalangd --config FILE [--data-dir DIR] [--http ADDR] [--mqtt ADDR]
//	  (role: commune in FILE runs the commune office's server instead)
//	loalangd --check-config FILE
//	loalangd --version
//	loalangd mosquitto-config --config FILE --out DIR [--listen ADDR]
//	loalangd backup [--config FILE] [--data-dir DIR]
//	loalangd restore [--config FILE] [--data-dir DIR] [--list] [BACKUP]
//	loalangd reinit --config FILE [--data-dir DIR]
//	loalangd reissue --config FILE [--data-dir DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/loalang/loalang/commune"
	"github.com/loalang/loalang/commune/whep"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/store"
)

// commit is the source revision, set with -ldflags "-X main.commit=..." by
// the Makefile; builds without it fall back to the VCS stamp Go records.
var commit = ""

// stdout receives --version's line, so that scripts can capture it.
var stdout io.Writer = os.Stdout

// versionString is what --version prints: the release, the commit and the
// Go toolchain that built the binary.
func versionString() string {
	c := commit
	if c == "" {
		c = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	return fmt.Sprintf("loalangd %s (commit %s, %s, %s/%s)", daemon.Version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loalangd:", err)
		os.Exit(1)
	}
}

// run is main without globals: signals cancel ctx, and a cancelled ctx is
// a clean stop, not an error.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "mosquitto-config":
			return runMosquittoConfig(args[1:], getenv, stderr)
		case "backup", "restore", "reinit", "reissue":
			return runStoreCommand(args[0], args[1:], getenv, stderr)
		}
	}
	fs := flag.NewFlagSet("loalangd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	check := fs.String("check-config", "", "validate this configuration file and exit")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	httpAddr := fs.String("http", "", "HTTP listen address (overrides http.addr)")
	mqttAddr := fs.String("mqtt", "", "embedded broker listen address (overrides mqtt.listen)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	version := fs.Bool("version", false, "print the version, commit and Go version, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Fprintln(stdout, versionString())
		return nil
	}
	if *check != "" {
		if _, err := config.Load(*check, getenv); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%s: ok\n", *check)
		return nil
	}
	cfg, err := loadConfig(*cfgPath, getenv, *dataDir, *httpAddr, *mqttAddr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.Role == config.RoleCommune {
		// The commune office runs the same binary (docs/commune.md):
		// one build, one package, one config loader and one upgrade path
		// for the district's technician.
		// Live speech and the police camera path (docs/commune-cameras.md)
		// mount on it.
		return commune.Run(ctx, cfg, log, commune.LiveMount, whep.Mount(ctx, cfg, log))
	}
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// loadConfig applies the layers: defaults, file, environment, flags.
func loadConfig(path string, getenv func(string) string, dataDir, httpAddr, mqttAddr string) (config.Config, error) {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return cfg, err
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if httpAddr != "" {
		cfg.HTTP.Addr = httpAddr
	}
	if mqttAddr != "" {
		cfg.MQTT.Listen = mqttAddr
	}
	if err := cfg.Validate(); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			ce.File = "flags"
		}
		return cfg, err
	}
	return cfg, nil
}

func runMosquittoConfig(args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("loalangd mosquitto-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	out := fs.String("out", "", "directory for mosquitto.conf, dynamic-security.json, acl and the daemon's password")
	listen := fs.String("listen", "127.0.0.1:1883", "address Mosquitto listens on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("mosquitto-config: --out is required")
	}
	cfg, err := loadConfig(*cfgPath, getenv, *dataDir, "", "")
	if err != nil {
		return err
	}
	pwFile, err := daemon.WriteMosquittoConfig(cfg, *out, *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote Mosquitto configuration to %s (restart Mosquitto to apply it)\nset mqtt.url: tcp://%s and mqtt.password_file: %s\n", *out, *listen, pwFile)
	return nil
}

// runStoreCommand runs the store's maintenance commands, with the daemon
// stopped: backup writes a consistent copy to <data_dir>/backups, restore
// brings one back (the newest unless named) keeping the replaced file, and
// reinit starts a new database that keeps the devices' credentials from
// the provisioning bundle; reissue gives every device a new secret when the
// bundle is lost.
func runStoreCommand(name string, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("loalangd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	list := fs.Bool("list", false, "restore: list the backups, newest first, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv, *dataDir, "", "")
	if err != nil {
		return err
	}
	dbPath := filepath.Join(cfg.DataDir, daemon.DBFile)
	switch name {
	case "backup":
		db, err := store.Open(dbPath, time.Second)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		defer db.Close()
		path, err := db.Backup("manual", store.BackupKeep)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote backup %s\n", path)
	case "restore":
		backups, err := store.Backups(dbPath)
		if err != nil {
			return err
		}
		if *list {
			for _, b := range backups {
				fmt.Fprintln(stderr, b)
			}
			return nil
		}
		from := fs.Arg(0)
		if from == "" {
			if len(backups) == 0 {
				return fmt.Errorf("restore: no backups in %s", store.BackupDir(dbPath))
			}
			from = backups[0]
		}
		kept, err := store.Restore(dbPath, from, time.Second)
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w: stop loalangd before restoring", err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "restored %s from %s\n", dbPath, from)
		if kept != "" {
			fmt.Fprintf(stderr, "the replaced file is kept as %s\n", kept)
		}
	case "reinit":
		if *cfgPath == "" {
			return errors.New("reinit: --config is required (it lists the devices)")
		}
		pw, err := daemon.Reinitialize(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created a new database in %s; devices keep their credentials from %s; the new admin password is in %s\n",
			cfg.DataDir, daemon.BundleFile, pw)
	case "reissue":
		if *cfgPath == "" {
			return errors.New("reissue: --config is required (it lists the devices)")
		}
		bundle, err := daemon.Reissue(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "issued new secrets for %d devices in %s; flash every device with it\n", len(cfg.Devices), bundle)
	}
	return nil
}
