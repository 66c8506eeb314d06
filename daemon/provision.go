package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broker"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/device"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/atomicfile"
	"github.com/loalang/loalang/store"
)

// Files the daemon writes into its data dir.
const (
	DBFile          = "loalang.db"
	ReadyFile       = "ready.json"
	AdminPassFile   = "initial-admin-password"
	BundleFile      = "provisioning.json"
	brokerPassFile  = "broker-service-password"
	lockTimeout     = time.Second
	adminSecretSize = 15 // 120 bits, 20 characters
	deviceSecretLen = 24 // 192 bits
)

// Credential is a device's broker credential as stored: only the hash.
type Credential struct {
	Username     string    `json:"username"`
	PasswordHash string    `json:"password_hash"`
	CreatedAt    time.Time `json:"created_at"`
}

// writeSecretFile writes data atomically with mode 0600, leaving no
// temporary file behind if anything fails (a full disk, say).
func writeSecretFile(path string, data []byte) error {
	return atomicfile.WriteBytes(path, 0o600, data)
}

// writeSecretFileIfChanged is writeSecretFile that leaves a file already
// holding data alone: a start that changes nothing writes nothing, and so
// can start on a full disk.
func writeSecretFileIfChanged(path string, data []byte) error {
	return atomicfile.WriteIfChanged(path, 0o600, data)
}

// bootstrapAdmin creates the first admin with a random password written
// to <data_dir>/initial-admin-password, when the store has no users
// (auth.Users.Bootstrap). There is no default password anywhere.
func bootstrapAdmin(db *store.DB, dataDir string) (created bool, err error) {
	path := filepath.Join(dataDir, AdminPassFile)
	return auth.NewUsers(store.NewAuthStore(db)).Bootstrap(context.Background(), adminSecretSize, func(pw string) error {
		if err := writeSecretFile(path, []byte(pw+"\n")); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}

// provision stores the configured devices and makes sure each has broker
// credentials. The bundle (provisioning.json) is what the devices were
// flashed with, so its secrets are never replaced: a device whose
// credential is missing from the store (a re-initialised or restored
// database) gets the bundle's secret back, and only a device the bundle
// does not hold a secret for gets a fresh one (the secret it had, if any,
// is lost with the bundle and stops working). The store is written only when
// something changed, and the bundle only when its content did.
func provision(db *store.DB, cfg config.Config, brokerURL string) ([]device.Device, error) {
	path := filepath.Join(cfg.DataDir, BundleFile)
	old, err := readBundle(cfg.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if errors.Is(err, os.ErrNotExist) {
		if err := bundleLost(db, cfg, path); err != nil {
			return nil, err
		}
	}
	known := map[string]string{}
	for _, d := range old.Devices {
		if d.Password != "" {
			known[d.ID] = d.Password
		}
	}
	var devices []device.Device
	for _, c := range cfg.Devices {
		devices = append(devices, device.Device{ID: c.ID, Kind: c.Kind, Name: c.Name, Zones: c.Zones, Lat: c.Lat, Lon: c.Lon})
	}
	// Find what differs first, in a read-only transaction.
	var changed []device.Device
	needCred := map[string]bool{}
	err = db.View(func(tx *store.Tx) error {
		for _, d := range devices {
			var cur device.Device
			if err := tx.Get(store.Devices, d.ID, &cur); err != nil || !reflect.DeepEqual(normDevice(cur), normDevice(d)) {
				changed = append(changed, d)
			}
			if _, have := known[d.ID]; !have || !tx.Exists(store.Creds, d.ID) {
				needCred[d.ID] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("provision devices: %w", err)
	}
	secrets := map[string]string{}
	for _, d := range devices {
		if s, ok := known[d.ID]; ok {
			secrets[d.ID] = s
		}
	}
	if len(changed) > 0 || len(needCred) > 0 {
		now := time.Now()
		err = db.Update(func(tx *store.Tx) error {
			for _, d := range changed {
				if err := tx.Put(store.Devices, d.ID, d); err != nil {
					return err
				}
			}
			for _, d := range devices {
				if !needCred[d.ID] {
					continue
				}
				secret, kept := known[d.ID]
				if !kept {
					secret = auth.RandomSecret(deviceSecretLen)
				}
				hash, err := broker.HashPassword(secret)
				if err != nil {
					return err
				}
				if err := tx.Put(store.Creds, d.ID, Credential{Username: d.ID, PasswordHash: hash, CreatedAt: now}); err != nil {
					return err
				}
				if err := tx.AppendAudit(store.Event{Time: now, Actor: "system", Action: audit.DeviceProvision, Target: d.ID,
					Detail: map[string]any{"from_bundle": kept}}); err != nil {
					return err
				}
				secrets[d.ID] = secret
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("provision devices: %w", err)
		}
	}
	bundle := wire.Bundle{Site: cfg.Site, Broker: brokerURL}
	for _, d := range devices {
		bundle.Devices = append(bundle.Devices, wire.BundleDevice{ID: d.ID, Kind: d.Kind, Name: d.Name, Zones: d.Zones, Username: d.ID, Password: secrets[d.ID]})
	}
	for _, c := range cfg.Cameras {
		bundle.Cameras = append(bundle.Cameras, wire.BundleCamera{ID: c.ID, Name: c.Name, URL: c.URL})
	}
	for _, rb := range cfg.RelayBoards {
		coils := rb.AmpCoil + 1
		for _, c := range rb.ZoneCoils {
			coils = max(coils, c+1)
		}
		bundle.Relays = append(bundle.Relays, wire.BundleRelay{ID: rb.ID, Port: rb.Port, SlaveID: rb.SlaveID, Coils: max(coils, 8)})
	}
	raw, _ := json.MarshalIndent(bundle, "", "  ")
	if err := writeSecretFileIfChanged(path, raw); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return devices, nil
}

// bundleLost refuses to go on when provisioning.json is missing but the
// store holds credentials of configured devices: issuing new secrets
// would lock out every device flashed with the lost bundle.
func bundleLost(db *store.DB, cfg config.Config, path string) error {
	var have []string
	db.View(func(tx *store.Tx) error {
		for _, d := range cfg.Devices {
			if tx.Exists(store.Creds, d.ID) {
				have = append(have, d.ID)
			}
		}
		return nil
	})
	if len(have) == 0 {
		return nil
	}
	names := strings.Join(have[:min(3, len(have))], ", ")
	if len(have) > 3 {
		names += ", …"
	}
	return fmt.Errorf("%w: %s is missing but the store holds broker credentials of %d devices (%s): issuing new secrets would lock out every device flashed with it, so loalangd will not start. Put the file back (it is what the devices were flashed with), or, to issue new secrets deliberately and re-flash every device, run `loalangd reissue --config <file>`",
		ErrBundleMissing, path, len(have), names)
}

// Reissue deliberately gives every configured device a new broker secret
// and writes a new provisioning.json, for when the old bundle is lost.
// Every device must then be flashed with the new bundle. Run it with the
// daemon stopped (it opens the store).
func Reissue(cfg config.Config) (bundle string, err error) {
	db, err := store.Open(filepath.Join(cfg.DataDir, DBFile), lockTimeout)
	if err != nil {
		return "", fmt.Errorf("reissue: %w", err)
	}
	defer db.Close()
	bundle = filepath.Join(cfg.DataDir, BundleFile)
	if _, err := os.Stat(bundle); err == nil {
		// Keep the old bundle: it may still be needed to reach a device.
		if err := os.Rename(bundle, bundle+".replaced-"+time.Now().UTC().Format("20060102T150405Z")); err != nil {
			return "", fmt.Errorf("reissue: %w", err)
		}
	}
	err = db.Update(func(tx *store.Tx) error {
		for _, d := range cfg.Devices {
			if err := tx.Delete(store.Creds, d.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return tx.AppendAudit(store.Event{Actor: "system", Action: audit.DeviceReissue, Detail: map[string]any{"devices": len(cfg.Devices)}})
	})
	if err != nil {
		return "", fmt.Errorf("reissue: %w", err)
	}
	if _, err := provision(db, cfg, cfg.MQTT.PublicURL); err != nil {
		return "", fmt.Errorf("reissue: %w", err)
	}
	return bundle, nil
}

// readBundle reads <data_dir>/provisioning.json; a missing file matches
// os.ErrNotExist.
func readBundle(dataDir string) (wire.Bundle, error) {
	path := filepath.Join(dataDir, BundleFile)
	var b wire.Bundle
	raw, err := os.ReadFile(path)
	if err != nil {
		return b, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// normDevice makes a stored and a configured device comparable: JSON turns
// an empty zone list into nil.
func normDevice(d device.Device) device.Device {
	if len(d.Zones) == 0 {
		d.Zones = nil
	}
	return d
}

// brokerRules builds the access rules from the stored credentials and the
// service account.
func brokerRules(db *store.DB, site string, devices []device.Device, serviceHash string) (broker.Rules, error) {
	rules := broker.Rules{Site: site, Accounts: []broker.Account{{Username: broker.ServiceUsername, PasswordHash: serviceHash,
		Role: broker.RoleService, ClientID: broker.ServiceClientID(site)}}}
	for _, d := range devices {
		c, err := store.Get[Credential](db, store.Creds, d.ID)
		if err != nil {
			return rules, fmt.Errorf("credential of %s: %w", d.ID, err)
		}
		rules.Accounts = append(rules.Accounts, broker.Account{Username: d.ID, PasswordHash: c.PasswordHash, Role: broker.RoleDevice, Zones: d.Zones})
	}
	return rules, nil
}

// WriteMosquittoConfig provisions the configured devices and writes a
// Mosquitto account file (client ids bound), ACL and configuration with the same rules the
// embedded broker enforces, plus the daemon's own password in
// <out>/loalangd.password. It returns that file's path. Run it with the
// daemon stopped (it opens the store), then restart Mosquitto: its
// dynamic security plugin reads the accounts only at start.
func WriteMosquittoConfig(cfg config.Config, out, listen string) (string, error) {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", err
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, DBFile), lockTimeout)
	if err != nil {
		return "", err
	}
	defer db.Close()
	devices, err := provision(db, cfg, "tcp://"+listen)
	if err != nil {
		return "", err
	}
	pw := auth.RandomSecret(24)
	hash, err := broker.HashPassword(pw)
	if err != nil {
		return "", err
	}
	rules, err := brokerRules(db, cfg.Site, devices, hash)
	if err != nil {
		return "", err
	}
	if err := broker.WriteMosquittoConfig(out, rules, listen); err != nil {
		return "", err
	}
	pwFile, err := filepath.Abs(filepath.Join(out, "loalangd.password"))
	if err != nil {
		return "", err
	}
	return pwFile, writeSecretFile(pwFile, []byte(pw+"\n"))
}
