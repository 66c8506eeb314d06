package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broker"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/device"
	"github.com/loalang/loalang/device/wire"
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

// writeSecretFile writes data atomically with mode 0600.
func writeSecretFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// bootstrapAdmin creates the first admin with a random password written
// to <data_dir>/initial-admin-password, when the store has no users. There
// is no default password anywhere.
func bootstrapAdmin(db *store.DB, dataDir string) (created bool, err error) {
	users, err := store.List[auth.User](db, store.Users, "")
	if err != nil || len(users) > 0 {
		return false, err
	}
	pw := auth.RandomSecret(adminSecretSize)
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return false, err
	}
	path := filepath.Join(dataDir, AdminPassFile)
	if err := writeSecretFile(path, []byte(pw+"\n")); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	now := time.Now()
	err = db.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Users, "admin", auth.User{Username: "admin", Role: auth.RoleAdmin, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: now, Actor: "system", Action: "user.create", Target: "admin", Detail: map[string]any{"role": "admin", "initial": true}})
	})
	return err == nil, err
}

// provision stores the configured devices and gives every device without
// credentials a fresh random secret. New secrets are merged into the
// bundle; existing ones are kept from it, since the store holds only hashes.
func provision(db *store.DB, cfg config.Config, brokerURL string) ([]device.Device, error) {
	path := filepath.Join(cfg.DataDir, BundleFile)
	var old wire.Bundle
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &old); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	known := map[string]string{}
	for _, d := range old.Devices {
		known[d.ID] = d.Password
	}
	bundle := wire.Bundle{Site: cfg.Site, Broker: brokerURL}
	var devices []device.Device
	now := time.Now()
	err := db.Update(func(tx *store.Tx) error {
		for _, c := range cfg.Devices {
			d := device.Device{ID: c.ID, Kind: c.Kind, Name: c.Name, Zones: c.Zones, Lat: c.Lat, Lon: c.Lon}
			devices = append(devices, d)
			if err := tx.Put(store.Devices, d.ID, d); err != nil {
				return err
			}
			secret, have := known[d.ID]
			if !tx.Exists(store.Creds, d.ID) || !have {
				// No credential yet, or its secret was lost from the bundle:
				// issue a new one (the old one stops working).
				secret = auth.RandomSecret(deviceSecretLen)
				hash, err := broker.HashPassword(secret)
				if err != nil {
					return err
				}
				if err := tx.Put(store.Creds, d.ID, Credential{Username: d.ID, PasswordHash: hash, CreatedAt: now}); err != nil {
					return err
				}
				if err := tx.AppendAudit(store.Event{Time: now, Actor: "system", Action: "device.provision", Target: d.ID}); err != nil {
					return err
				}
			}
			bundle.Devices = append(bundle.Devices, wire.BundleDevice{ID: d.ID, Kind: d.Kind, Name: d.Name, Zones: d.Zones, Username: d.ID, Password: secret})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("provision devices: %w", err)
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
	if err := writeSecretFile(path, raw); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return devices, nil
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
