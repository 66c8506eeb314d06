package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestCommuneValidate: role: commune checks the commune section (not the
// village's), and every error names its key; an unknown role is refused.
func TestCommuneValidate(t *testing.T) {
	good := func() Config {
		c := Default()
		c.Role = RoleCommune
		c.Site = "" // not used by the commune
		c.Commune = Commune{Province: "hanoi", ID: "xa-1", MQTTURL: "ssl://127.0.0.1:8883", ClientID: "commune-xa-1",
			SigningKeyFile: "/etc/loalang/commune.key", PublicURL: "https://xa-1.example:8443", Villages: []string{"thon-1"}}
		return c
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid commune refused: %v", err)
	}
	cases := []struct {
		key    string
		mutate func(c *Config)
	}{
		{"role", func(c *Config) { c.Role = "district" }},
		{"commune.province", func(c *Config) { c.Commune.Province = "" }},
		{"commune.id", func(c *Config) { c.Commune.ID = "xa/1" }},
		{"commune.mqtt_url", func(c *Config) { c.Commune.MQTTURL = "http://x:1" }},
		{"commune.client_id", func(c *Config) { c.Commune.ClientID = "" }},
		{"commune.signing_key_file", func(c *Config) { c.Commune.SigningKeyFile = "" }},
		{"commune.public_url", func(c *Config) { c.Commune.PublicURL = "https://x.example/" }},
		{"commune.villages[0]", func(c *Config) { c.Commune.Villages = []string{"#"} }},
		{"commune.resend_every", func(c *Config) { c.Commune.ResendEvery = -1 }},
		{"data_dir", func(c *Config) { c.DataDir = "" }},
	}
	for _, tc := range cases {
		c := good()
		tc.mutate(&c)
		var ce *Error
		if err := c.Validate(); !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%s: got %v", tc.key, err)
		}
	}
	// From a file: the error names the file and the key.
	path := filepath.Join(t.TempDir(), "commune.yaml")
	os.WriteFile(path, []byte("role: commune\ndata_dir: /tmp/x\ncommune:\n  province: hanoi\n  id: xa-1\n  mqtt_url: tcp://127.0.0.1:1883\n  client_id: c\n  signing_key_file: k\n  public_url: ftp://x\n"), 0o600)
	_, err := Load(path, func(string) string { return "" })
	var ce *Error
	if !errors.As(err, &ce) || ce.File != path || ce.Key != "commune.public_url" {
		t.Fatalf("from a file: %v", err)
	}
}
