package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/loalang/loalang/internal/audiotest"
)

// TestWebAppRecords is issue 15's browser acceptance, in headless Chromium
// at 390×844 against one daemon with speakers in zones a–c: the village
// head
//  1. uploads a Khmer recording on the library page, filters by language,
//     listens to it, renames and tags it;
//  2. creates a daily schedule with the media picker and zone checkboxes,
//     seeing the next five firings before saving, then edits it (new time,
//     one zone fewer) and the preview and the stored schedule follow;
//  3. cannot delete the clip the schedule plays: the page names the
//     schedule;
//  4. opens the monthly report after a broadcast: the chart, the zone table
//     and the most-missed list, and its printable form (print media);
//  5. does all of it again in English: every string the pages show has an
//     English text.
//
// Screenshots go to outputDir (docs/screenshots holds a copy).
func TestWebAppRecords(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed (apt install chromium)")
	}
	if os.Getenv(netnsEnv) == "" && exec.Command("unshare", "-n", "true").Run() == nil {
		reexecInNetns(t, "TestWebAppRecords")
		return
	}
	dir := t.TempDir()
	cfg := testConfig(t, dir, 6)
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	speakers := startSpeakers(t, dir, nil)
	admin := login(t, base, "admin", adminPassword(t, dir))
	if code, body := admin.do("POST", "/api/v1/users", map[string]any{"username": "truong-thon", "password": "mot-hai-ba-bon", "role": "head"}); code != 201 {
		t.Fatalf("create head: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})
	ctx := startChromium(t, chromium, 90*time.Second)
	b := &browser{t: t, ctx: ctx, base: base, out: outputDir(t)}
	b.do("viewport", chromedp.EmulateViewport(390, 844))
	b.do("sign-in page", chromedp.Navigate(base+"/app/login"))
	eval[bool](b, `document.cookie = "lang=vi; path=/", true`)
	b.signIn("truong-thon", "mot-hai-ba-bon")
	confirmYes := func() { eval[bool](b, `window.confirm = () => true, true`) }
	// tap clicks an element from the page's script: the app's toast, shown
	// for 4 s at the bottom of the screen, could otherwise take a real
	// pointer's click.
	tap := func(sel string) {
		t.Helper()
		if !eval[bool](b, `(() => { const e = document.querySelector(`+"`"+sel+"`"+`); if (!e) return false; e.click(); return true })()`) {
			t.Fatalf("tap %s: no such element", sel)
		}
	}

	// 1. The library: upload in Khmer, filter, listen, rename and tag.
	tone := filepath.Join(t.TempDir(), "thong-bao.wav")
	os.WriteFile(tone, audiotest.WAV(audiotest.Tone(1000, 0.5, 16000, 2000), 16000, 1), 0o644)
	b.open("/app/library")
	b.do("upload", chromedp.SetUploadFiles(chromedp.CSS("#lib-file"), []string{tone}),
		chromedp.SetValue(chromedp.CSS("#lib-upload-name"), "Thông báo tiêm chủng"),
		chromedp.SetValue(chromedp.CSS("#lib-upload-language"), "km"),
		chromedp.Click(chromedp.CSS("#lib-upload")))
	eventually(t, 15*time.Second, "the clip in the library", func() bool {
		return eval[int](b, `document.querySelectorAll("#lib-list .lib-row").length`) == 1
	})
	id := eval[string](b, `document.querySelector("#lib-list .lib-row").dataset.id`)
	key := id[:12]
	if got := eval[string](b, `document.querySelector("#lib-list .lib-row").dataset.language`); got != "km" {
		t.Errorf("uploaded clip language %q, want km", got)
	}
	b.do("filter vi", chromedp.SetValue(chromedp.CSS("#lib-filter"), "vi"))
	eval[bool](b, `document.getElementById("lib-filter").dispatchEvent(new Event("change")), true`)
	eventually(t, 5*time.Second, "vi filter hides the Khmer clip", func() bool { return eval[bool](b, `!!document.getElementById("lib-empty")`) })
	b.do("filter km", chromedp.SetValue(chromedp.CSS("#lib-filter"), "km"))
	eval[bool](b, `document.getElementById("lib-filter").dispatchEvent(new Event("change")), true`)
	eventually(t, 5*time.Second, "km filter shows it", func() bool {
		return eval[int](b, `document.querySelectorAll("#lib-list .lib-row").length`) == 1
	})
	tap("#lib-list button.play")
	eventually(t, 10*time.Second, "the clip plays on the phone", func() bool {
		return eval[bool](b, `!!document.getElementById("player") && document.getElementById("player").currentTime > 0.2`)
	})
	tap("#lib-list details summary")
	b.do("edit", chromedp.SetValue(chromedp.CSS("#lib-name-"+key), "Tiêm chủng tháng 12"),
		chromedp.SetValue(chromedp.CSS("#lib-tags-"+key), "y tế, tiêm chủng"))
	tap("#lib-save-" + key)
	eventually(t, 5*time.Second, "renamed", func() bool {
		return eval[string](b, `(document.querySelector("#lib-list .lib-title") || {}).textContent || ""`) == "Tiêm chủng tháng 12"
	})
	code, body := admin.do("GET", "/api/v1/media/"+id, nil)
	var clip struct {
		Name, Language string
		Tags           []string
	}
	json.Unmarshal(body, &clip)
	if code != 200 || clip.Name != "Tiêm chủng tháng 12" || strings.Join(clip.Tags, "|") != "y tế|tiêm chủng" || clip.Language != "km" {
		t.Errorf("stored clip: %d %s", code, body)
	}
	b.screenshot("library")

	// 2. A schedule from the media picker and zone checkboxes.
	b.open("/app/schedules")
	eventually(t, 5*time.Second, "the picker lists the clip", func() bool {
		return eval[int](b, `document.querySelectorAll("#sched-media-list .pick").length`) == 1
	})
	b.do("fill the form", chromedp.SetValue(chromedp.CSS("#sched-name"), "Tin tiêm chủng"),
		chromedp.Click(chromedp.CSS("#pick-"+key)), chromedp.Click(chromedp.CSS("#sched-zone-a")), chromedp.Click(chromedp.CSS("#sched-zone-b")),
		chromedp.SetValue(chromedp.CSS("#sched-time"), "06:30"))
	eval[bool](b, `document.getElementById("sched-time").dispatchEvent(new Event("change")), true`)
	previewTimes := func() []string {
		return eval[[]string](b, `[...document.querySelectorAll("#sched-preview li")].map(li => li.dataset.at)`)
	}
	eventually(t, 5*time.Second, "five firings at 06:30 shown before saving", func() bool {
		p := previewTimes()
		return len(p) == 5 && strings.Contains(p[0], "T06:30:00+07:00") && strings.Contains(p[4], "T06:30:00+07:00")
	})
	if got := eval[string](b, `document.getElementById("sched-language").value`); got != "km" {
		t.Errorf("picking the clip set language %q, want its km", got)
	}
	if n := len(schedulesOf(t, admin)); n != 0 {
		t.Fatalf("%d schedules before saving", n)
	}
	b.screenshot("schedule-form")
	tap("#sched-save")
	var sc map[string]any
	eventually(t, 5*time.Second, "schedule created", func() bool {
		list := schedulesOf(t, admin)
		if len(list) == 1 {
			sc = list[0]
		}
		return len(list) == 1
	})
	if sc["rrule"] != "FREQ=DAILY;BYHOUR=6;BYMINUTE=30;BYSECOND=0" || sc["language"] != "km" || sc["source"].(map[string]any)["media_id"] != id ||
		strings.Join(toStrings(sc["zones"]), ",") != "a,b" {
		t.Fatalf("created schedule: %v", sc)
	}
	// Edit: the form is filled from the schedule; move it to 07:15, zone a only.
	eventually(t, 5*time.Second, "listed", func() bool { return eval[int](b, `document.querySelectorAll("#sched-list .sched-row").length`) == 1 })
	tap("#sched-list .sched-row button")
	if !eval[bool](b, `document.getElementById("pick-`+key+`").checked && document.getElementById("sched-zone-a").checked && document.getElementById("sched-zone-b").checked && document.getElementById("sched-time").value === "06:30" && document.getElementById("sched-name").value === "Tin tiêm chủng"`) {
		t.Fatal("the edit form does not show the schedule")
	}
	tap("#sched-zone-b")
	b.do("change", chromedp.SetValue(chromedp.CSS("#sched-time"), "07:15"))
	eval[bool](b, `document.getElementById("sched-time").dispatchEvent(new Event("change")), true`)
	eventually(t, 5*time.Second, "the preview follows the edit", func() bool {
		p := previewTimes()
		return len(p) == 5 && strings.Contains(p[0], "T07:15:00+07:00")
	})
	b.screenshot("schedule-edit")
	tap("#sched-save")
	eventually(t, 5*time.Second, "schedule updated", func() bool {
		list := schedulesOf(t, admin)
		return len(list) == 1 && list[0]["rrule"] == "FREQ=DAILY;BYHOUR=7;BYMINUTE=15;BYSECOND=0" && strings.Join(toStrings(list[0]["zones"]), ",") == "a" &&
			list[0]["version"] == float64(2)
	})
	// A cron line in the rule field is saved as cron, and an unchanged
	// cron schedule saves again as it is.
	for i, rule := range []string{"15 7 * * 1-5", ""} {
		version := float64(3 + i)
		eventually(t, 5*time.Second, "the list shows the saved version", func() bool {
			return eval[string](b, `document.querySelector("#sched-list .sched-row").dataset.version`) == fmt.Sprint(version-1)
		})
		tap("#sched-list .sched-row button")
		if rule != "" {
			b.do("cron", chromedp.SetValue(chromedp.CSS("#sched-when"), "rrule"), chromedp.SetValue(chromedp.CSS("#sched-rrule"), rule))
			eval[bool](b, `document.getElementById("sched-rrule").dispatchEvent(new Event("change")), true`)
		}
		tap("#sched-save")
		var last []map[string]any
		saved := func() bool {
			last = schedulesOf(t, admin)
			return len(last) == 1 && last[0]["cron"] == "15 7 * * 1-5" && last[0]["rrule"] == nil && last[0]["version"] == version
		}
		for deadline := time.Now().Add(5 * time.Second); !saved() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if !saved() {
			t.Fatalf("cron schedule not saved (version %v): %v; page says %q", version, last,
				eval[string](b, `document.getElementById("toast").textContent`))
		}
	}

	// 3. The clip is in use: deleting it is refused, naming the schedule.
	b.open("/app/library")
	confirmYes()
	tap("#lib-list details summary")
	tap("#lib-delete-" + key)
	eventually(t, 5*time.Second, "refusal names the schedule", func() bool {
		return strings.Contains(eval[string](b, `document.getElementById("lib-error-`+key+`").textContent`), "Tin tiêm chủng")
	})
	if code, _ := admin.do("GET", "/api/v1/media/"+id, nil); code != 200 {
		t.Error("the clip in use was deleted")
	}
	b.screenshot("library-in-use")

	// 4. The report, after the clip went out to zone a.
	code, body = admin.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": id, "zones": []string{"a"}, "priority": "priority"})
	if code != 201 {
		t.Fatalf("broadcast: %d %s", code, body)
	}
	var bc struct{ ID string }
	json.Unmarshal(body, &bc)
	eventually(t, 20*time.Second, "broadcast done and reported", func() bool {
		v := admin.broadcast(bc.ID)
		return v.State == "done" && len(v.Devices) == 2 && v.Devices[0].Played > 0 && v.Devices[1].Played > 0
	})
	b.open("/app/reports")
	eventually(t, 5*time.Second, "report rendered", func() bool {
		return eval[int](b, `document.querySelectorAll("#rep-chart rect.bar-priority[data-zone='a']").length`) == 1 &&
			eval[int](b, `document.querySelectorAll("#rep-zones tbody tr").length`) == 1
	})
	if got := eval[string](b, `document.querySelector("#rep-zones tbody tr td:nth-child(4)").textContent`); !strings.Contains(got, "Khmer") {
		t.Errorf("zone a by language: %q, want Khmer air time", got)
	}
	if href := eval[string](b, `document.getElementById("rep-csv").getAttribute("href")`); !strings.Contains(href, "format=csv") {
		t.Errorf("CSV link %q", href)
	}
	b.screenshot("report")
	b.do("print media", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return err
	}))
	if eval[bool](b, `getComputedStyle(document.querySelector("nav.tabs")).display !== "none" || getComputedStyle(document.getElementById("rep-print")).display !== "none"`) {
		t.Error("print view still shows the navigation or the buttons")
	}
	b.screenshot("report-print")
	b.do("screen media", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: ""})
		return err
	}))

	// 5. English.
	eval[bool](b, `document.cookie = "lang=en; path=/", true`)
	for _, c := range []struct{ page, tab string }{{"schedules", "Schedules"}, {"library", "Library"}, {"reports", "Reports"}, {"home", "Home"}, {"broadcast", "Broadcast"}} {
		b.open("/app/" + c.page)
		if got := eval[string](b, `document.querySelector(".tabs a.active").textContent`); got != c.tab {
			t.Errorf("%s tab reads %q in English", c.page, got)
		}
		if lang := eval[string](b, `document.documentElement.lang`); lang != "en" {
			t.Errorf("%s: html lang %q", c.page, lang)
		}
		// Every translated element has an English string, and no text shows a raw key.
		missing := eval[[]string](b, `[...document.querySelectorAll("[data-i18n]")].map(e => e.dataset.i18n).filter(k => !I18N.strings[k] || !I18N.strings[k][1])`)
		if len(missing) > 0 {
			t.Errorf("%s: keys without English: %v", c.page, missing)
		}
		raw := eval[[]string](b, `[...document.querySelectorAll("main *")].filter(e => e.children.length === 0 && /^[a-z]+\.[a-z.]+$/.test(e.textContent.trim())).map(e => e.textContent)`)
		if len(raw) > 0 {
			t.Errorf("%s: untranslated keys shown: %v", c.page, raw)
		}
		if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("%s is %d px wide at a 390 px viewport", c.page, w)
		}
		if c.page == "schedules" {
			tap("#sched-list .sched-row button")
			eventually(t, 5*time.Second, "English preview", func() bool { return len(previewTimes()) == 5 })
			if got := eval[string](b, `document.querySelector("#sched-form h2").textContent`); !strings.HasPrefix(got, "Edit") {
				t.Errorf("edit title in English: %q", got)
			}
		}
		b.screenshot("en-" + c.page)
	}
}

func schedulesOf(t *testing.T, c *client) []map[string]any {
	t.Helper()
	code, body := c.do("GET", "/api/v1/schedules", nil)
	if code != 200 {
		t.Fatalf("schedules: %d %s", code, body)
	}
	var out []map[string]any
	json.Unmarshal(body, &out)
	return out
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
