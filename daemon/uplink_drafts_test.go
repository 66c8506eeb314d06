package daemon_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/uplink"
	"github.com/loalang/loalang/web/api"
)

// TestUplinkDrafts is the village head's "Gửi xã" against a daemon whose
// uplink goes to a real Mosquitto: the head and the admin submit and list
// drafts, police may not; bad drafts are refused with the field's reason;
// the list is newest first, each draft reaches "sent" once the broker has
// its event (the commune side receives it). In Chromium at 390×844 the
// head submits through the page and sees it in the list, then at the
// commune. Only the newest uplink.DraftsKept are kept. Without an uplink
// both calls answer 409.
func TestUplinkDrafts(t *testing.T) {
	upstream := startUpstreamMosquitto(t)
	cfg := testConfig(t, t.TempDir(), 0)
	pub, _, _ := ed25519.GenerateKey(nil)
	cfg.Uplink = config.Uplink{URL: "tcp://" + upstream, ClientID: "thon-test", Province: "hanoi", Commune: "xa-1",
		CommuneKeys: []string{uplink.PublicKeyString(pub)}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	topics, _ := uplink.NewTopics("hanoi", "xa-1", cfg.Site)
	desk := newCommune(t, upstream, topics.Events())
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	admin := login(t, base, "admin", adminPassword(t, cfg.DataDir))
	for _, u := range []map[string]any{
		{"username": "truong-thon", "password": "mot-hai-ba-bon", "role": "head"},
		{"username": "congan", "password": "nam-sau-bay-tam", "role": "police"},
	} {
		if code, body := admin.do("POST", "/api/v1/users", u); code != 201 {
			t.Fatalf("create %v: %d %s", u["username"], code, body)
		}
	}
	head := login(t, base, "truong-thon", "mot-hai-ba-bon")
	police := login(t, base, "congan", "nam-sau-bay-tam")
	list := func(c *client) []api.SubmittedDraft {
		t.Helper()
		code, body := c.do("GET", "/api/v1/uplink/drafts", nil)
		var out []api.SubmittedDraft
		if code != 200 || json.Unmarshal(body, &out) != nil {
			t.Fatalf("list drafts: %d %s", code, body)
		}
		return out
	}
	submit := func(c *client, dr map[string]any) string {
		t.Helper()
		code, body := c.do("POST", "/api/v1/uplink/drafts", dr)
		var out struct{ ID string }
		if code != 202 || json.Unmarshal(body, &out) != nil || out.ID == "" {
			t.Fatalf("submit %v: %d %s", dr, code, body)
		}
		return out.ID
	}

	good := map[string]any{"title": "Mất nước", "text": "Thôn 1 mất nước từ 8 giờ.", "zones": []string{"a"}}
	for _, m := range []string{"GET", "POST"} {
		if code, body := police.do(m, "/api/v1/uplink/drafts", good); code != 403 {
			t.Errorf("police %s drafts: %d %s, want 403", m, code, body)
		}
	}
	for _, c := range []struct {
		draft map[string]any
		want  string
	}{
		{map[string]any{"title": "x", "text": "  "}, "text must be"},
		{map[string]any{"text": strings.Repeat("ư", 2001)}, "text must be"}, // 4002 bytes
		{map[string]any{"title": strings.Repeat("t", 201), "text": "x"}, "title must be"},
		{map[string]any{"text": "x", "urgency": "flash"}, "urgency must be"},
		{map[string]any{"text": "x", "zones": "a"}, ""}, // not a list: bad JSON
	} {
		code, body := head.do("POST", "/api/v1/uplink/drafts", c.draft)
		if code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("submit %v: %d %s, want 400 %q", c.draft, code, body, c.want)
		}
	}
	if got := list(head); len(got) != 0 {
		t.Fatalf("refused drafts were kept: %+v", got)
	}

	first := submit(head, good)
	second := submit(admin, map[string]any{"text": "Họp thôn tối nay.", "urgency": "emergency"})
	got := list(head)
	if len(got) != 2 || got[0].ID != second || got[1].ID != first {
		t.Fatalf("list after two submits: %+v, want %s then %s", got, second, first)
	}
	if g := got[1]; g.Author != "truong-thon" || g.Title != "Mất nước" || g.Text != good["text"] || g.Urgency != "routine" ||
		len(g.Zones) != 1 || g.Zones[0] != "a" || time.Since(g.Submitted) > time.Minute {
		t.Errorf("head's draft listed as %+v", g)
	}
	if g := got[0]; g.Author != "admin" || g.Urgency != "emergency" {
		t.Errorf("admin's draft listed as %+v", g)
	}
	eventually(t, 30*time.Second, "both drafts acknowledged by the broker", func() bool {
		l := list(admin)
		return l[0].Status == uplink.DraftSent && l[1].Status == uplink.DraftSent && !l[1].Sent.IsZero()
	})
	eventually(t, 10*time.Second, "the drafts at the commune side", func() bool {
		return desk.has(uplink.KindDraft, `"id":"`+first+`"`) && desk.has(uplink.KindDraft, `"id":"`+second+`"`)
	})

	// The page, as the head on a phone.
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium not installed (make deps): %v", err)
	}
	b := &browser{t: t, ctx: startChromium(t, chromium, 60*time.Second), base: base, out: outputDir(t)}
	b.do("viewport", chromedp.EmulateViewport(390, 844))
	b.signIn("truong-thon", "mot-hai-ba-bon")
	eventually(t, 10*time.Second, "the Gửi xã tab", func() bool {
		return eval[bool](b, `(() => { const a = document.querySelector('.tabs a[href="/app/drafts"]'); return !!a && !a.hidden && a.textContent === "Gửi xã"; })()`)
	})
	b.open("/app/drafts")
	eventually(t, 10*time.Second, "the list", func() bool {
		return eval[int](b, `document.querySelectorAll("#draft-list .draft-row").length`) == 2
	})
	b.do("empty text", chromedp.Click(chromedp.CSS("#draft-submit")))
	if msg := eval[string](b, `document.getElementById("draft-error").textContent`); msg != "Hãy nhập nội dung." {
		t.Errorf("empty text: error %q", msg)
	}
	b.do("write a draft",
		chromedp.SetValue(chromedp.CSS("#draft-title"), "Sạt lở"),
		chromedp.SetValue(chromedp.CSS("#draft-text"), "Đường ra đồng bị sạt lở."),
		chromedp.Click(chromedp.CSS("#draft-submit")))
	var mine string
	eventually(t, 10*time.Second, "the page's draft in the list", func() bool {
		mine = eval[string](b, `(() => { const r = document.querySelector("#draft-list .draft-row"); return r && r.textContent.includes("Sạt lở") ? r.dataset.id : ""; })()`)
		return mine != ""
	})
	if l := list(admin); l[0].ID != mine || l[0].Author != "truong-thon" || l[0].Text != "Đường ra đồng bị sạt lở." {
		t.Errorf("the page submitted %+v", l[0])
	}
	eventually(t, 20*time.Second, "shown as at the commune", func() bool {
		return eval[string](b, `document.querySelector("#draft-list .draft-row").dataset.status`) == uplink.DraftSent
	})
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the page is %d px wide at a 390 px viewport", w)
	}
	b.screenshot("drafts")
	eval[bool](b, `document.cookie = "lang=en; path=/", true`)
	b.open("/app/drafts")
	eventually(t, 10*time.Second, "the list in English", func() bool {
		return eval[string](b, `(document.querySelector("#draft-list .draft-status") || {}).textContent || ""`) == "At the commune"
	})
	if missing := eval[[]string](b, `[...document.querySelectorAll("[data-i18n]")].map(e => e.dataset.i18n).filter(k => !I18N.strings[k] || !I18N.strings[k][1])`); len(missing) > 0 {
		t.Errorf("keys without English: %v", missing)
	}
	if raw := eval[[]string](b, `[...document.querySelectorAll("main *")].filter(e => e.children.length === 0 && /^[a-z]+\.[a-z.]+$/.test(e.textContent.trim())).map(e => e.textContent)`); len(raw) > 0 {
		t.Errorf("untranslated keys shown: %v", raw)
	}

	// The bound: the oldest are forgotten.
	for i := range uplink.DraftsKept {
		submit(admin, map[string]any{"title": fmt.Sprint("n", i), "text": "x"})
	}
	got = list(head)
	if len(got) != uplink.DraftsKept || got[0].Title != fmt.Sprint("n", uplink.DraftsKept-1) || got[len(got)-1].Title != "n0" {
		t.Fatalf("after %d more: %d kept, newest %q, oldest %q", uplink.DraftsKept, len(got), got[0].Title, got[len(got)-1].Title)
	}

	// Without an uplink: 409 for both calls; the page says so and its tab
	// stays hidden.
	offDir := t.TempDir()
	off := startDaemon(t, testConfig(t, offDir, 0))
	offAdmin := login(t, "http://"+off.Ready().HTTP, "admin", adminPassword(t, offDir))
	for _, m := range []string{"GET", "POST"} {
		if code, body := offAdmin.do(m, "/api/v1/uplink/drafts", good); code != 409 || !strings.Contains(string(body), "uplink.url") {
			t.Errorf("%s drafts without an uplink: %d %s, want 409", m, code, body)
		}
	}
	b.signOut()
	b.base = "http://" + off.Ready().HTTP
	b.signIn("admin", adminPassword(t, offDir))
	b.open("/app/drafts")
	eventually(t, 10*time.Second, "the page says the uplink is off", func() bool {
		return eval[bool](b, `!!document.getElementById("drafts-off") && !document.getElementById("draft-form")`)
	})
	b.open("/app/account") // no other call to /api/v1/uplink
	// The tab's GET /api/v1/uplink has completed once it is in the resource
	// timeline; a later call's answer comes after its handler ran.
	eventually(t, 10*time.Second, "the tab's uplink check done", func() bool {
		return eval[int](b, `performance.getEntriesByName(location.origin + "/api/v1/uplink").length`) > 0
	})
	if !eval[bool](b, `window.loalang.api("GET", "/api/v1/uplink").then(() => document.querySelector('.tabs a[href="/app/drafts"]').hidden)`) {
		t.Error("the Gửi xã tab shows without an uplink")
	}
}
