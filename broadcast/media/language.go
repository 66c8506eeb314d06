package media

import (
	"fmt"
	"slices"
)

// Language is a language the commune broadcasts in. Decree 49/2024/ND-CP
// on grassroots information asks communes to broadcast in the minority
// languages their villages speak as well as in Vietnamese.
type Language struct {
	// Code is the BCP 47 tag (RFC 5646 §2.2.1: the ISO 639-1 code where
	// one exists, else ISO 639-3).
	Code string `json:"code"`
	// Name is the language's name in Vietnamese; English is its English name.
	Name    string `json:"name"`
	English string `json:"english"`
	// Voice is the espeak-ng voice that speaks it, or "" when espeak-ng has
	// none (text-to-speech is then refused with ErrNoVoice).
	Voice string `json:"voice,omitempty"`
}

// Languages lists the languages a clip, a schedule or a broadcast may be
// tagged with. Voices are those of espeak-ng 1.51 (Debian 12,
// `espeak-ng --voices`): it speaks Vietnamese but none of the minority
// languages. Its "th" voice is Central Thai, not the Tai Dam (Thái đen) or
// Tai Don spoken in north-west Vietnam, so Thái gets no voice.
var Languages = []Language{
	{Code: "vi", Name: "Tiếng Việt", English: "Vietnamese", Voice: "vi"},
	{Code: "tyz", Name: "Tiếng Tày", English: "Tày"},
	{Code: "blt", Name: "Tiếng Thái", English: "Thái (Tai Dam)"},
	{Code: "mtq", Name: "Tiếng Mường", English: "Mường"},
	{Code: "hmn", Name: "Tiếng H'Mông", English: "H'Mông"},
	{Code: "km", Name: "Tiếng Khmer", English: "Khmer"},
}

// DefaultLanguage tags clips and schedules that name none.
const DefaultLanguage = "vi"

// LookupLanguage returns the language with this code.
func LookupLanguage(code string) (Language, bool) {
	i := slices.IndexFunc(Languages, func(l Language) bool { return l.Code == code })
	if i < 0 {
		return Language{}, false
	}
	return Languages[i], true
}

// CheckLanguage validates a language tag; "" is DefaultLanguage.
func CheckLanguage(code string) error {
	if code == "" {
		return nil
	}
	if _, ok := LookupLanguage(code); !ok {
		return fmt.Errorf("language: %q is not one of %v: %w", code, LanguageCodes(), ErrUnknownLanguage)
	}
	return nil
}

// LanguageCodes lists the codes of Languages.
func LanguageCodes() []string {
	out := make([]string, len(Languages))
	for i, l := range Languages {
		out[i] = l.Code
	}
	return out
}

// VoiceFor returns the espeak-ng voice for a language ("" is
// DefaultLanguage), or an error wrapping ErrNoVoice that names the
// language when espeak-ng cannot speak it, or ErrUnknownLanguage.
func VoiceFor(code string) (string, error) {
	if code == "" {
		code = DefaultLanguage
	}
	l, ok := LookupLanguage(code)
	if !ok {
		return "", CheckLanguage(code)
	}
	if l.Voice == "" {
		return "", fmt.Errorf("language: espeak-ng has no voice for %s (%s); record the announcement and upload it instead: %w", l.English, l.Code, ErrNoVoice)
	}
	return l.Voice, nil
}
