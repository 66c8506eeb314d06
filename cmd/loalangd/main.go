// Command loalangd is the village hall's edge controller: it streams
// announcements to IP loudspeakers over MQTT, drives the hall's amplifier,
// relays cameras to the commune police and keeps its state in bbolt.
//
//	loalangd --config FILE [--data-dir DIR] [--http ADDR] [--mqtt ADDR]
//	loalangd --check-config FILE
//	loalangd mosquitto-config --config FILE --out DIR [--listen ADDR]
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
	"syscall"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
)

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
	if len(args) > 0 && args[0] == "mosquitto-config" {
		return runMosquittoConfig(args[1:], getenv, stderr)
	}
	fs := flag.NewFlagSet("loalangd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	check := fs.String("check-config", "", "validate this configuration file and exit")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	httpAddr := fs.String("http", "", "HTTP listen address (overrides http.addr)")
	mqttAddr := fs.String("mqtt", "", "embedded broker listen address (overrides mqtt.listen)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
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
