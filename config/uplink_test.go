package config

import (
	"errors"
	"testing"
)

// TestUplinkValidate: the uplink section is checked only when on, and
// every error names its key.
func TestUplinkValidate(t *testing.T) {
	key := "Ag3mA8wUyJ2hbSEmnVmjQ0ydb3gTFz6FbX3QHXrJ2wU=" // 32 bytes
	good := Uplink{URL: "ssl://a.example:8883,ssl://b.example:8883", ClientID: "thon-3", Province: "hanoi", Commune: "xa-1", ProvinceKeys: []string{key}}
	cfg := Default()
	cfg.Uplink = good
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid uplink refused: %v", err)
	}
	cases := []struct {
		key    string
		mutate func(u *Uplink)
	}{
		{"uplink.url", func(u *Uplink) { u.URL = "http://x:1" }},
		{"uplink.url", func(u *Uplink) { u.URL = "tcp://a:1,nonsense" }},
		{"uplink.client_id", func(u *Uplink) { u.ClientID = "" }},
		{"uplink.commune", func(u *Uplink) { u.Commune = "xa/1" }},
		{"uplink.province", func(u *Uplink) { u.Province = "#" }},
		{"uplink.province_keys", func(u *Uplink) { u.ProvinceKeys = nil }},
		{"uplink.province_keys[0]", func(u *Uplink) { u.ProvinceKeys = []string{"c2hvcnQ="} }},
		{"uplink.commune_keys[0]", func(u *Uplink) { u.CommuneKeys = []string{"not base64!"} }},
		{"uplink.media_allow", func(u *Uplink) { u.MediaAllow = []string{"10.0.0.0/33"} }},
	}
	for _, tc := range cases {
		c := Default()
		c.Uplink = good
		tc.mutate(&c.Uplink)
		err := c.Validate()
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%s: got %v", tc.key, err)
		}
	}
	off := Default()
	off.Uplink = Uplink{Commune: "bad/level"} // ignored while url is empty
	if err := off.Validate(); err != nil {
		t.Fatalf("an off uplink was validated: %v", err)
	}
}
