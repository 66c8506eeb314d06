package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/broker"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

func noEnv(string) string { return "" }

// TestBackupRestoreCommands: `loalangd backup` writes a checked copy,
// `restore --list` lists it, `restore` refuses while the store is open and
// then brings the newest backup back over a damaged file, which is kept.
func TestBackupRestoreCommands(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, daemon.DBFile)
	db, err := store.Open(dbPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	store.Put(db, store.Users, "admin", map[string]string{"username": "admin"})
	db.Close()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"backup", "--data-dir", dir}, noEnv, &out); err != nil {
		t.Fatalf("backup: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"restore", "--data-dir", dir, "--list"}, noEnv, &out); err != nil || !strings.Contains(out.String(), "-manual.db") {
		t.Fatalf("restore --list: %v\n%s", err, out.String())
	}

	open, err := store.Open(dbPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"restore", "--data-dir", dir}, noEnv, &out)
	open.Close()
	if err == nil || !strings.Contains(err.Error(), "stop loalangd") {
		t.Fatalf("restore while the store is open: %v", err)
	}

	storetest.Damage(dbPath, storetest.Halved, 1)
	out.Reset()
	if err := run(context.Background(), []string{"restore", "--data-dir", dir}, noEnv, &out); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "kept as "+dbPath+".replaced-") {
		t.Fatalf("restore output: %s", out.String())
	}
	db, err = store.Open(dbPath, time.Second)
	if err != nil {
		t.Fatalf("open restored: %v", err)
	}
	defer db.Close()
	if _, err := store.Get[map[string]string](db, store.Users, "admin"); err != nil {
		t.Fatal("restored store lacks the admin")
	}
}

// TestReinitKeepsBundleSecrets: `loalangd reinit` after the database was
// lost stores each device's credential from provisioning.json (the secret
// the device was flashed with) and a new admin password.
func TestReinitKeepsBundleSecrets(t *testing.T) {
	dir := t.TempDir()
	bundle := wire.Bundle{Site: "demo", Broker: "tcp://192.0.2.1:1883", Devices: []wire.BundleDevice{
		{ID: "spk-01", Kind: "speaker", Username: "spk-01", Password: "the-secret-spk-01-was-flashed-with"}}}
	raw, _ := json.MarshalIndent(bundle, "", "  ")
	os.WriteFile(filepath.Join(dir, daemon.BundleFile), raw, 0o600)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"reinit", "--config", "../../configs/demo.yaml", "--data-dir", dir}, noEnv, &out); err != nil {
		t.Fatalf("reinit: %v\n%s", err, out.String())
	}
	db, err := store.Open(filepath.Join(dir, daemon.DBFile), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := store.Get[daemon.Credential](db, store.Creds, "spk-01")
	if err != nil || !broker.VerifyPassword(c.PasswordHash, "the-secret-spk-01-was-flashed-with") {
		t.Fatalf("spk-01's credential is not the bundle's secret: %v", err)
	}
	var after wire.Bundle
	raw, _ = os.ReadFile(filepath.Join(dir, daemon.BundleFile))
	json.Unmarshal(raw, &after)
	if len(after.Devices) != 12 || after.Devices[0].Password != "the-secret-spk-01-was-flashed-with" {
		t.Fatalf("bundle after reinit: %d devices, spk-01 secret kept: %v", len(after.Devices), len(after.Devices) > 0 && after.Devices[0].Password == bundle.Devices[0].Password)
	}
	if _, err := os.Stat(filepath.Join(dir, daemon.AdminPassFile)); err != nil {
		t.Fatalf("no admin password file: %v", err)
	}
	// A second reinit refuses: the database is there now.
	if err := run(context.Background(), []string{"reinit", "--config", "../../configs/demo.yaml", "--data-dir", dir}, noEnv, &out); err == nil {
		t.Fatal("reinit over an existing database")
	}
}
