package media

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestLanguageVoicesMatchEspeak checks the language table against the
// installed espeak-ng: every voice it names exists, and no language marked
// voiceless has a voice under its own code.
func TestLanguageVoicesMatchEspeak(t *testing.T) {
	out, err := exec.Command(espeakBinary, "--voices").Output()
	if err != nil {
		t.Fatalf("espeak-ng --voices (apt install espeak-ng): %v", err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 {
			have[f[1]] = true
		}
	}
	for _, l := range Languages {
		if l.Voice != "" && !have[l.Voice] {
			t.Errorf("%s: voice %q is not installed", l.Code, l.Voice)
		}
		if l.Voice == "" && have[l.Code] {
			t.Errorf("%s: espeak-ng has a voice %q but the table says none", l.Code, l.Code)
		}
	}
	if v, err := VoiceFor(""); v != "vi" || err != nil {
		t.Errorf("default voice %q %v", v, err)
	}
	_, err = VoiceFor("km")
	if !errors.Is(err, ErrNoVoice) || !strings.Contains(err.Error(), "Khmer") {
		t.Errorf("Khmer: %v, want ErrNoVoice naming the language", err)
	}
	if _, err := VoiceFor("xx"); !errors.Is(err, ErrUnknownLanguage) {
		t.Errorf("xx: %v", err)
	}
	if err := CheckLanguage("hmn"); err != nil {
		t.Error(err)
	}
}
