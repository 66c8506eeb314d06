package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/store"
)

func testCommand(now time.Time) Command {
	return Command{V: 1, ID: "storm-0915", Nonce: "00112233445566778899aabbccddeeff", Level: LevelProvince, Sender: "hanoi",
		Issued: now, Expires: now.Add(time.Hour), Target: Target{Province: "hanoi", Commune: "xa-1", Zones: []string{"north"}},
		Urgency: UrgencyEmergency, Text: "Bão số 3 sắp đổ bộ. Đề nghị bà con về nhà."}
}

// TestGoldenWire pins the topics, a signed envelope and an event to bytes
// documented in docs/protocol.md.
func TestGoldenWire(t *testing.T) {
	tp := testTopics(t)
	var b strings.Builder
	fmt.Fprintln(&b, tp.Events())
	fmt.Fprintln(&b, tp.Presence())
	for _, c := range tp.CommandTopics() {
		fmt.Fprintln(&b, c)
	}
	golden(t, "topics.golden", []byte(b.String()))

	env, err := Sign(testCommand(time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC)), seedKey(1))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "envelope.golden", append(env, '\n'))
	cmd, err := Open(env, Keys{Province: []ed25519PublicKey{seedKey(1).Public().(ed25519PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Text != testCommand(time.Time{}).Text || cmd.Target.Zones[0] != "north" {
		t.Fatalf("opened %+v", cmd)
	}

	ev := Event{ID: "9f3a01c2-42", Seq: 42, Province: "hanoi", Commune: "xa-1", Site: "thon-3", Kind: "command", Class: ClassReport,
		Time: time.Date(2026, 9, 15, 8, 0, 1, 500000000, time.UTC), Data: json.RawMessage(`{"command_id":"storm-0915","outcome":"accepted"}`)}
	raw, _ := json.Marshal(ev)
	golden(t, "event.golden", append(raw, '\n'))
}

// TestNewTopicsRefusesWildcards: a level with '/', '+' or '#' would let a
// village subscribe to or publish into another's topics.
func TestNewTopicsRefusesWildcards(t *testing.T) {
	for _, bad := range []string{"", "a/b", "+", "#", "x\x00"} {
		if _, err := NewTopics("hanoi", bad, "thon-3"); err == nil {
			t.Errorf("commune %q accepted", bad)
		}
	}
}

// recordingPlayer stands in for the broadcast engine in the handler's unit
// tests (the daemon's end-to-end test plays on simulated speakers).
type recordingPlayer struct{ plays []Play }

func (p *recordingPlayer) Play(_ context.Context, pl Play) (string, error) {
	p.plays = append(p.plays, pl)
	return fmt.Sprintf("b%d", len(p.plays)), nil
}

func reports(t *testing.T, ob *Outbox) []Report {
	t.Helper()
	entries, err := ob.Peek(1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []Report
	for _, e := range entries {
		var ev Event
		if err := json.Unmarshal(e.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind != "command" {
			continue
		}
		var r Report
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestCommandsRefuseAndReport covers acceptance: a forged signature, a
// replayed nonce, an expired command and a command for another commune
// are each refused and reported upward; a valid one plays at emergency.
func TestCommandsRefuseAndReport(t *testing.T) {
	db := newDB(t)
	clk := newClock()
	tp := testTopics(t)
	ob, err := OpenOutbox(db, tp, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	province, commune, mallory := seedKey(1), seedKey(2), seedKey(3)
	keys := Keys{Province: []ed25519PublicKey{province.Public().(ed25519PublicKey)}, Commune: []ed25519PublicKey{commune.Public().(ed25519PublicKey)}}
	pl := &recordingPlayer{}
	h := NewCommands(CommandsConfig{Topics: tp, Keys: keys, Now: clk.Now}, db, ob, pl, testLog)
	ctx := context.Background()
	sign := func(c Command, k ed25519PrivateKey) []byte {
		env, err := Sign(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	fresh := func(id string) Command {
		c := testCommand(clk.Now())
		c.ID, c.Nonce = id, NewNonce()
		return c
	}

	valid := sign(fresh("ok"), province)
	if err := h.Handle(ctx, valid); err != nil {
		t.Fatalf("valid command refused: %v", err)
	}
	if len(pl.plays) != 1 || pl.plays[0].Priority != "emergency" || pl.plays[0].Actor != "province:hanoi" {
		t.Fatalf("plays %+v", pl.plays)
	}

	// Forged: signed by a key nobody trusts; and a trusted envelope whose
	// command bytes were altered after signing.
	forged := sign(fresh("forged"), mallory)
	var env Envelope
	json.Unmarshal(sign(fresh("tampered"), province), &env)
	c := fresh("tampered")
	c.Target.Commune = "xa-2"
	raw, _ := json.Marshal(c)
	env.Cmd = base64Std(raw)
	tampered, _ := json.Marshal(env)
	// A commune key may not pass for the province's.
	claimsProvince := sign(fresh("impostor"), commune)

	expiredCmd := fresh("late")
	expiredCmd.Issued, expiredCmd.Expires = clk.Now().Add(-2*time.Hour), clk.Now().Add(-time.Minute)
	other := fresh("other")
	other.Target.Commune = "xa-2"
	otherVillage := fresh("other-village")
	otherVillage.Target.Villages = []string{"thon-9"}

	cases := []struct {
		name string
		env  []byte
		want error
	}{
		{"forged", forged, ErrBadSignature},
		{"tampered", tampered, ErrBadSignature},
		{"impostor", claimsProvince, ErrBadSignature},
		{"replay", valid, ErrReplay},
		{"expired", sign(expiredCmd, province), ErrExpired},
		{"other commune", sign(other, province), ErrNotForUs},
		{"other village", sign(otherVillage, province), ErrNotForUs},
		{"garbage", []byte("{not json"), ErrMalformed},
	}
	for _, tc := range cases {
		if err := h.Handle(ctx, tc.env); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if len(pl.plays) != 1 {
		t.Fatalf("a refused command played: %+v", pl.plays)
	}
	var refused []string
	for _, r := range reports(t, ob) {
		if r.Outcome == OutcomeRefused {
			refused = append(refused, r.CommandID+":"+r.Reason)
		}
	}
	want := []string{"forged:bad_signature", "tampered:bad_signature", "impostor:bad_signature", "ok:replay", "late:expired",
		"other:not_for_us", "other-village:not_for_us", ":malformed"}
	if fmt.Sprint(refused) != fmt.Sprint(want) {
		t.Fatalf("refusals reported %q, want %q", refused, want)
	}
	seen := h.Seen()
	if seen["accepted"] != 1 || seen["refused:bad_signature"] != 3 || seen["refused:replay"] != 1 {
		t.Fatalf("seen %v", seen)
	}

	// The replay is refused after a restart too: the nonce is in bbolt.
	h2 := NewCommands(CommandsConfig{Topics: tp, Keys: keys, Now: clk.Now}, db, ob, pl, testLog)
	if err := h2.Handle(ctx, valid); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after restart: %v", err)
	}
	// Nonces are pruned after their expiry, so the store stays bounded.
	clk.Advance(2 * time.Hour)
	h2.prune()
	var n int
	db.View(func(tx *store.Tx) error { n, _ = tx.CountNonces(); return nil })
	if n != 0 {
		t.Fatalf("%d nonces kept after expiry", n)
	}
}

// TestSignCLI runs keygen and sign as the operator would and opens the
// result with the printed public key.
func TestSignCLI(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "province.key")
	var out, errb strings.Builder
	if err := Main([]string{"keygen", "-out", keyFile}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(keyFile); info.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", info.Mode())
	}
	if err := Main([]string{"keygen", "-out", keyFile}, &out, &errb); err == nil {
		t.Fatal("keygen overwrote a key")
	}
	pub, err := ParsePublicKey(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	media := filepath.Join(dir, "storm.mp3")
	os.WriteFile(media, []byte("not really mp3"), 0o644)
	out.Reset()
	err = Main([]string{"sign", "-key", keyFile, "-sender", "hanoi", "-province", "hanoi", "-commune", "xa-1", "-urgency", "emergency",
		"-media-url", "https://province.example/storm.mp3", "-media-file", media, "-ttl", "30m"}, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := Open([]byte(strings.TrimSpace(out.String())), Keys{Province: []ed25519PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Media == nil || cmd.Media.Size != 14 || cmd.Urgency != UrgencyEmergency || cmd.Expires.Sub(cmd.Issued) != 30*time.Minute {
		t.Fatalf("signed %+v", cmd)
	}
	if err := cmd.Check(time.Now(), testTopics(t)); err != nil {
		t.Fatal(err)
	}
}
