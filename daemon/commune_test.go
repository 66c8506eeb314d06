package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	communesrv "github.com/loalang/loalang/commune"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/uplink"
)

// communeOffice is a commune role server on a real Mosquitto, served on
// 127.0.0.1 with live speech mounted, with an editor and an approver
// signed in.
type communeOffice struct {
	srv             *communesrv.Server
	base            string
	pub             string // the signing key's public half, for the villages
	admin, ed, appr *client
	cfg             config.Config
}

func startCommuneOffice(t *testing.T, broker string, villages []string) *communeOffice {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "commune.key")
	pub, err := uplink.Keygen(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Role = config.RoleCommune
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.HTTP.Addr = ln.Addr().String()
	cfg.Commune = config.Commune{Province: "hanoi", ID: "xa-1", MQTTURL: "tcp://" + broker, ClientID: "commune-xa-1",
		SigningKeyFile: keyPath, PublicURL: "http://" + ln.Addr().String(), Villages: villages, ResendEvery: 2 * time.Second}
	cfg.WebRTC.UDPPort, cfg.WebRTC.ListenIPs, cfg.WebRTC.LoopbackCandidates = 0, []string{"127.0.0.1"}, true // live speech's WHIP
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := communesrv.New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := communesrv.LiveMount(s); err != nil {
		s.Close()
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); s.Close() })
	o := &communeOffice{srv: s, base: "http://" + ln.Addr().String(), pub: pub, cfg: cfg}
	raw, err := os.ReadFile(filepath.Join(cfg.DataDir, communesrv.AdminPassFile))
	if err != nil {
		t.Fatal(err)
	}
	o.admin = communeLogin(t, o.base, "admin", strings.TrimSpace(string(raw)))
	for _, u := range [][3]string{{"bientap", "editor-pass-1", "editor"}, {"duyet", "approver-pass-1", "approver"}} {
		if code, body := o.admin.do("POST", "/api/v1/commune/users", map[string]any{"username": u[0], "password": u[1], "role": u[2]}); code != 201 {
			t.Fatalf("create %s: %d %s", u[0], code, body)
		}
	}
	o.ed = communeLogin(t, o.base, "bientap", "editor-pass-1")
	o.appr = communeLogin(t, o.base, "duyet", "approver-pass-1")
	return o
}

func communeLogin(t *testing.T, base, user, pw string) *client {
	t.Helper()
	c := &client{t: t, base: base}
	code, body := c.do("POST", "/api/v1/commune/login", map[string]string{"username": user, "password": pw})
	if code != 200 {
		t.Fatalf("commune login %s: %d %s", user, code, body)
	}
	var out struct{ Token string }
	json.Unmarshal(body, &out)
	c.token = out.Token
	return c
}

func (o *communeOffice) villages(t *testing.T) map[string]communesrv.VillageView {
	code, body := o.ed.do("GET", "/api/v1/commune/villages", nil)
	if code != 200 {
		t.Fatalf("villages: %d %s", code, body)
	}
	var out struct{ Villages []communesrv.VillageView }
	json.Unmarshal(body, &out)
	m := map[string]communesrv.VillageView{}
	for _, v := range out.Villages {
		m[v.Site] = v
	}
	return m
}

func (o *communeOffice) draft(t *testing.T, id string) communesrv.DraftView {
	code, body := o.ed.do("GET", "/api/v1/commune/drafts/"+id, nil)
	if code != 200 {
		t.Fatalf("draft %s: %d %s", id, code, body)
	}
	var v communesrv.DraftView
	json.Unmarshal(body, &v)
	return v
}

// communeVillage is a village configured with an uplink to the commune.
func communeVillage(t *testing.T, site, broker, communeKey string, speakers int) config.Config {
	cfg := testConfig(t, t.TempDir(), speakers)
	cfg.Site = site
	cfg.MQTT.Listen = freePort(t) // the speakers find the broker again after a restart
	cfg.Uplink = config.Uplink{URL: "tcp://" + broker, ClientID: site, Province: "hanoi", Commune: "xa-1",
		CommuneKeys: []string{communeKey}, MediaAllow: []string{"127.0.0.1/32"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// uplinkBroadcasts lists the village's broadcasts that came from above.
type uplinkBroadcast struct {
	ID, State, Origin, Text, Actor string
}

func uplinkBroadcasts(c *client) []uplinkBroadcast {
	_, body := c.do("GET", "/api/v1/broadcasts", nil)
	var all []uplinkBroadcast
	json.Unmarshal(body, &all)
	var out []uplinkBroadcast
	for _, b := range all {
		if b.Origin == "uplink" {
			out = append(out, b)
		}
	}
	return out
}

// TestCommuneBroadcastApprovalAndOfflineVillage is issue 14's commune
// broadcast end to end, with a real Mosquitto as the commune's broker,
// the commune role server and three in-process villages with simulated
// speakers:
//   - the villages page shows each village's speakers online per zone;
//   - (a) an editor's recording draft for two villages, approved by the
//     approver, is signed, sent, played in both, and its per-speaker
//     delivery is on the commune's draft (the broadcast page's API);
//   - (b) a draft the approver refuses is never sent and never airs;
//   - (c) a village offline when a draft is approved plays it when it
//     comes back, within the draft's expiry, and reports it;
//   - a village head's draft reaches the commune as a submitted draft.
func TestCommuneBroadcastApprovalAndOfflineVillage(t *testing.T) {
	broker := startUpstreamMosquitto(t)
	office := startCommuneOffice(t, broker, []string{"thon-1", "thon-2", "thon-3"})

	type village struct {
		cfg      config.Config
		d        *daemon.Daemon
		c        *client
		speakers int
	}
	vs := map[string]*village{}
	for i, site := range []string{"thon-1", "thon-2", "thon-3"} {
		cfg := communeVillage(t, site, broker, office.pub, 2+i)
		v := &village{cfg: cfg, speakers: 2 + i}
		if site == "thon-3" {
			// thon-3 is stopped and started by the test itself.
			ctx, cancel := context.WithCancel(context.Background())
			d, err := daemon.New(ctx, cfg, testLogger(t))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			v.d = d
			t.Cleanup(func() { cancel(); v.d.Close() })
		} else {
			v.d = startDaemon(t, cfg)
		}
		startSpeakers(t, cfg.DataDir, nil)
		v.c = login(t, "http://"+v.d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
		vs[site] = v
	}

	// Villages at a glance: every speaker online, per zone, from the
	// villages' state events only.
	eventually(t, 60*time.Second, "every village's speakers online at the commune", func() bool {
		m := office.villages(t)
		for site, v := range vs {
			if m[site].Online != v.speakers || len(m[site].Zones) == 0 || m[site].Presence != "online" {
				return false
			}
		}
		return true
	})
	if z := office.villages(t)["thon-3"].Zones; len(z) != 3 || z[0].Zone != "a" || z[0].Online != 2 {
		t.Fatalf("thon-3's zones at the commune: %+v", z)
	}

	// (a) A recording for thon-1 and thon-2, drafted and approved.
	wav := audiotest.WAV(audiotest.Tone(660, 0.5, 16000, 3000), 16000, 1)
	req, _ := http.NewRequest("POST", office.base+"/api/v1/commune/media", strings.NewReader(string(wav)))
	req.Header.Set("Authorization", "Bearer "+office.ed.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var media communesrv.Media
	json.NewDecoder(resp.Body).Decode(&media)
	resp.Body.Close()
	if resp.StatusCode != 201 || media.Size != int64(len(wav)) {
		t.Fatalf("media upload: %d %+v", resp.StatusCode, media)
	}
	code, body := office.ed.do("POST", "/api/v1/commune/drafts", map[string]any{"title": "Lịch tiêm phòng", "media_sha256": media.SHA256,
		"villages": []string{"thon-1", "thon-2"}, "urgency": "routine", "expires_in": "1h"})
	if code != 201 {
		t.Fatalf("draft: %d %s", code, body)
	}
	var a communesrv.Draft
	json.Unmarshal(body, &a)
	if a.Status != communesrv.StatusPending {
		t.Fatalf("a new draft is %q, want pending", a.Status)
	}
	if code, _ := office.ed.do("POST", "/api/v1/commune/drafts/"+a.ID+"/approve", nil); code != 403 {
		t.Fatalf("the editor approved her own draft: %d", code)
	}
	if code, body := office.appr.do("POST", "/api/v1/commune/drafts/"+a.ID+"/approve", nil); code != 200 {
		t.Fatalf("approve: %d %s", code, body)
	}
	eventually(t, 90*time.Second, "draft (a) played in thon-1 and thon-2 with per-speaker delivery", func() bool {
		v := office.draft(t, a.ID)
		return v.Summary.Played == 2 && v.Summary.Speakers == 5
	})
	va := office.draft(t, a.ID)
	t.Logf("draft (a) summary: %+v", va.Summary)
	if va.Summary.SpeakersPlayed != 5 || va.Summary.FramesPlayed == 0 || va.Summary.Accepted != 2 {
		t.Fatalf("draft (a) delivery: %+v", va.Summary)
	}
	for _, d := range va.Deliveries {
		if d.State != "done" {
			t.Errorf("%s: the broadcast ended %q (%s), want done", d.Site, d.State, d.Detail)
		}
	}
	for _, site := range []string{"thon-1", "thon-2"} {
		if bs := uplinkBroadcasts(vs[site].c); len(bs) != 1 {
			t.Fatalf("%s played %d commune broadcasts, want 1", site, len(bs))
		}
	}
	if bs := uplinkBroadcasts(vs["thon-3"].c); len(bs) != 0 {
		t.Fatalf("thon-3, not targeted, played %d", len(bs))
	}

	// (b) A draft the approver refuses.
	code, body = office.ed.do("POST", "/api/v1/commune/drafts", map[string]any{"title": "Chưa duyệt", "text": "Bản tin này không được phát.",
		"villages": []string{"thon-1", "thon-2"}, "urgency": "routine", "expires_in": "1h"})
	if code != 201 {
		t.Fatalf("draft b: %d %s", code, body)
	}
	var b communesrv.Draft
	json.Unmarshal(body, &b)
	if code, body := office.appr.do("POST", "/api/v1/commune/drafts/"+b.ID+"/reject", map[string]string{"reason": "sai nội dung"}); code != 200 {
		t.Fatalf("reject: %d %s", code, body)
	}
	if code, _ := office.appr.do("POST", "/api/v1/commune/drafts/"+b.ID+"/approve", nil); code != 409 {
		t.Fatalf("a rejected draft was approved afterwards: %d", code)
	}

	// (c) thon-3 goes offline; a draft for it is approved meanwhile.
	cancelV3 := vs["thon-3"]
	if err := cancelV3.d.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "thon-3 offline at the commune", func() bool { return office.villages(t)["thon-3"].Presence == "offline" })
	code, body = office.ed.do("POST", "/api/v1/commune/drafts", map[string]any{"title": "Họp dân", "text": "Mời bà con họp tối nay.",
		"villages": []string{"thon-3"}, "zones": []string{"a"}, "urgency": "routine", "expires_in": "30m"})
	if code != 201 {
		t.Fatalf("draft c: %d %s", code, body)
	}
	var c communesrv.Draft
	json.Unmarshal(body, &c)
	if code, body := office.appr.do("POST", "/api/v1/commune/drafts/"+c.ID+"/approve", nil); code != 200 {
		t.Fatalf("approve c: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "draft (c) sent while thon-3 is offline", func() bool {
		d := office.draft(t, c.ID)
		return len(d.Deliveries) == 1 && d.Deliveries[0].Sends >= 1 && d.Deliveries[0].Accepted.IsZero()
	})
	ctx3, cancel3 := context.WithCancel(context.Background())
	d3, err := daemon.New(ctx3, vs["thon-3"].cfg, testLogger(t))
	if err != nil {
		cancel3()
		t.Fatal(err)
	}
	vs["thon-3"].d = d3
	t.Cleanup(cancel3)
	eventually(t, 120*time.Second, "draft (c) played by thon-3 after it came back", func() bool {
		d := office.draft(t, c.ID)
		return d.Summary.Played == 1 && d.Summary.Speakers == 2
	})
	vc := office.draft(t, c.ID)
	t.Logf("draft (c) after the return: %+v", vc.Deliveries[0])
	if vc.Summary.SpeakersPlayed != 2 || vc.Deliveries[0].State != "done" {
		t.Fatalf("draft (c) delivery: %+v %+v", vc.Summary, vc.Deliveries[0])
	}

	// (b) never aired: no village played anything but (a) and (c), and the
	// draft has no delivery at all.
	vb := office.draft(t, b.ID)
	if vb.Status != communesrv.StatusRejected || len(vb.Deliveries) != 0 || vb.Envelope != nil {
		t.Fatalf("the rejected draft: %+v", vb)
	}
	c3 := login(t, "http://"+d3.Ready().HTTP, "admin", adminPassword(t, vs["thon-3"].cfg.DataDir))
	for site, cl := range map[string]*client{"thon-1": vs["thon-1"].c, "thon-2": vs["thon-2"].c, "thon-3": c3} {
		for _, bc := range uplinkBroadcasts(cl) {
			if strings.Contains(bc.Text, "không được phát") {
				t.Fatalf("%s aired the rejected draft: %+v", site, bc)
			}
		}
	}

	// A village head's draft reaches the commune as submitted.
	if code, body := vs["thon-1"].c.do("POST", "/api/v1/uplink/drafts", map[string]any{"title": "Mất nước", "text": "Thôn 1 mất nước từ 8 giờ."}); code != 202 {
		t.Fatalf("village draft: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "the village's draft at the commune", func() bool {
		_, body := office.ed.do("GET", "/api/v1/commune/drafts?status=submitted", nil)
		var ds []communesrv.DraftView
		json.Unmarshal(body, &ds)
		return len(ds) == 1 && ds[0].Source == "village:thon-1" && strings.Contains(ds[0].Text, "mất nước")
	})

	// The month's report counts the played broadcasts per village.
	_, body = office.ed.do("GET", "/api/v1/commune/reports", nil)
	var rep struct{ Villages []communesrv.MonthRow }
	json.Unmarshal(body, &rep)
	got := map[string]int{}
	for _, r := range rep.Villages {
		got[r.Site] = r.Broadcasts
	}
	if got["thon-1"] < 1 || got["thon-2"] < 1 || got["thon-3"] < 1 {
		t.Fatalf("monthly report: %s", body)
	}
	_, csv := office.ed.do("GET", "/api/v1/commune/reports.csv", nil)
	if !strings.HasPrefix(string(csv), "month,village,") || !slices.ContainsFunc(strings.Split(string(csv), "\n"), func(l string) bool { return strings.Contains(l, ",thon-3,") }) {
		t.Fatalf("csv: %s", csv)
	}
	fmt.Fprint(testWriter{t}, string(csv))

	communePages(t, office, a.ID)
}

// communePages signs in to the commune's web app in headless Chromium at
// 390×844 as the editor: the villages page shows every village with its
// speakers online, the broadcast page draft (a) with every speaker
// delivered; screenshots commune-villages.png and commune-broadcast.png
// go to the test output directory. Then, as the approver, the broadcast
// page has the live speech control (commune-live.png).
func communePages(t *testing.T, office *communeOffice, draftID string) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Log("chromium not installed: the web app is not checked")
		return
	}
	ctx := startChromium(t, chromium, 60*time.Second)
	b := &browser{t: t, ctx: ctx, base: office.base, out: outputDir(t)}
	b.do("viewport", chromedp.EmulateViewport(390, 844))
	b.do("sign in", chromedp.Navigate(office.base+"/"),
		chromedp.WaitVisible(`#login input[name=username]`),
		chromedp.SendKeys(`#login input[name=username]`, "bientap"),
		chromedp.SendKeys(`#login input[name=password]`, "editor-pass-1"),
		chromedp.Click(`#login button`))
	defer func() {
		if t.Failed() {
			t.Logf("page: %s", eval[string](b, `document.body.innerHTML`))
		}
	}()
	eventually(t, 20*time.Second, "villages page with three villages", func() bool {
		return eval[int](b, `document.querySelectorAll("section[data-site]").length`) == 3 &&
			eval[bool](b, `document.querySelector('section[data-site="thon-3"]').textContent.includes("4/4")`)
	})
	shot := func(name string) {
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot()) // the 390×844 viewport
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(b.out, "commune-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	shot("villages")
	b.do("broadcast page", chromedp.Navigate(office.base+"/#broadcast"))
	eventually(t, 20*time.Second, "broadcast page with draft (a) delivered", func() bool {
		return eval[bool](b, `(() => { const c = document.querySelector('section[data-draft="`+draftID+`"]'); return !!c && c.textContent.includes("5/5"); })()`)
	})
	shot("broadcast")
	if !eval[bool](b, `!!document.querySelector('#draft input[name=air_at]')`) {
		t.Fatal("the bulletin form has no air time")
	}
	if eval[bool](b, `!!document.querySelector('#live')`) {
		t.Fatal("an editor has the live speech control")
	}
	b.do("approvals page", chromedp.Navigate(office.base+"/#approvals"))
	eventually(t, 20*time.Second, "approvals page", func() bool {
		return eval[bool](b, `document.querySelector("main h1") && document.querySelector("main h1").textContent === "Duyệt tin"`)
	})
	shot("approvals")
	b.do("reports page", chromedp.Navigate(office.base+"/#reports"))
	eventually(t, 20*time.Second, "reports page with the chart", func() bool {
		return eval[bool](b, `!!document.querySelector("main svg")`)
	})
	shot("reports")
	b.do("users page", chromedp.Navigate(office.base+"/#users"))
	eventually(t, 20*time.Second, "users page: own password form, no user admin for an editor", func() bool {
		return eval[bool](b, `!!document.querySelector("#mypw") && !document.querySelector("#users") && document.querySelector("main h1").textContent === "Người dùng"`)
	})

	// The approver has the live speech control on the broadcast page (its
	// microphone is not exercised here: TestCommuneLiveSpeechEndToEnd
	// speaks to the endpoint with a pion peer).
	b.do("sign out", chromedp.Click(`#logout`), chromedp.WaitVisible(`#login input[name=username]`))
	b.do("sign in as the approver", chromedp.SendKeys(`#login input[name=username]`, "duyet"),
		chromedp.SendKeys(`#login input[name=password]`, "approver-pass-1"),
		chromedp.Click(`#login button`), chromedp.WaitVisible(`#nav`))
	b.do("broadcast page as the approver", chromedp.Navigate(office.base+"/#broadcast"))
	eventually(t, 20*time.Second, "the approver's live speech control with a village chooser", func() bool {
		return eval[bool](b, `(() => { const b = document.querySelector('#live-toggle'); return !!b && b.textContent === "Bắt đầu nói" &&
			document.querySelectorAll('#liveform input[name=v]').length === 3 && !document.querySelector('#draft'); })()`)
	})
	shot("live")
}
