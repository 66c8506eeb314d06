// Loa làng web app: plain modern JS, no build step, no CDN. Each page is
// rendered from the API; the server checks every page and call by role.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const t = (k, v) => I18N.t(k, v);
const body = document.body;
const ROLE = body.dataset.role;
const PAGE = body.dataset.page;
const CSRF = document.querySelector('meta[name="csrf-token"]').content;

// h builds an element: h("div", {class: "x", onclick: f}, child, "text").
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "i18n") { el.dataset.i18n = v; el.textContent = t(v); }
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

// api calls the JSON API with the session cookie and the CSRF header.
async function api(method, path, data) {
  const opts = { method, headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" };
  if (data !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(data);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) { location.href = "/app/login?next=" + encodeURIComponent(location.pathname); throw new Error(t("err.session")); }
  const text = await r.text();
  let out = null;
  try { out = text ? JSON.parse(text) : null; } catch (e) { out = text; }
  if (!r.ok) {
    const err = new Error((out && out.error) || r.status + " " + r.statusText);
    err.status = r.status;
    err.body = out;
    throw err;
  }
  return out;
}

function toast(msg, bad) {
  const el = $("#toast");
  el.textContent = msg;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

// fmtTime shows an instant; tz (an IANA zone such as a schedule's) shows it
// on that zone's clock rather than the phone's.
const fmtTime = (s, tz) => {
  if (!s) return "—";
  const loc = I18N.lang === "vi" ? "vi-VN" : "en-GB";
  try { return new Date(s).toLocaleString(loc, tz ? { timeZone: tz, dateStyle: "medium", timeStyle: "short" } : {}); } catch (e) { return new Date(s).toLocaleString(loc); }
};
const fmtClock = (s) => s ? new Date(s).toLocaleTimeString(I18N.lang === "vi" ? "vi-VN" : "en-GB", { hour: "2-digit", minute: "2-digit" }) : "—";
const terminal = (st) => ["done", "stopped", "failed", "interrupted", "expired"].includes(st);

const NAV = [
  ["home", ["admin", "head", "police"]],
  ["broadcast", ["admin", "head"]],
  ["drafts", ["admin", "head"], "uplink"],
  ["schedules", ["admin", "head"]],
  ["library", ["admin", "head"]],
  ["reports", ["admin", "head"]],
  ["devices", ["admin", "head"]],
  ["cameras", ["admin", "police"]],
  ["log", ["admin"]],
  ["users", ["admin"]],
  ["account", ["admin", "head", "police"]],
];

// timers are cleared when a page is left (none: pages are full loads) or
// re-rendered.
let refreshTimer = null;
function every(ms, f) {
  clearInterval(refreshTimer);
  f();
  refreshTimer = setInterval(f, ms);
}

// ---------- health banner ----------

// healthProblems are the components /healthz names as down, refreshed
// every few seconds on every page: a stopped background service (the
// scheduler, the MQTT connection) is never silent.
let healthProblems = [];

function serviceAlarm(p) {
  const key = "svc." + p.component;
  const name = t(key) === key ? p.component : t(key);
  return t("alarm.service", { name, reason: p.reason });
}

async function refreshHealth() {
  try {
    const r = await fetch("/healthz", { credentials: "same-origin", cache: "no-store" });
    healthProblems = [];
    if (r.status === 503) {
      const out = await r.json();
      healthProblems = (out && out.problems) || [];
    }
  } catch (e) { healthProblems = [{ component: "loalangd", reason: t("err.network") }]; }
  const banner = $("#health-banner");
  if (!banner) return;
  banner.replaceChildren(...healthProblems.map((p) => h("p", {}, "⚠ " + serviceAlarm(p))));
  banner.hidden = healthProblems.length === 0;
}

// ---------- shared data ----------

async function zonesFromDevices() {
  const devs = await api("GET", "/api/v1/devices");
  const zones = new Set();
  for (const d of devs) for (const z of d.zones || []) zones.add(z);
  return { devs, zones: [...zones].sort() };
}

function progressBar(value, max, label) {
  const pct = max > 0 ? Math.min(100, Math.round(100 * value / max)) : 0;
  const bar = h("div", { class: "bar" });
  bar.style.width = pct + "%"; // CSSOM, allowed by the style-src 'self' policy
  return h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100, title: label },
    bar, h("span", {}, label));
}

function broadcastCard(b) {
  const card = h("section", { class: "card bc", dataset: { id: b.id, state: b.state } },
    h("h3", {}, t("bc.source." + (b.source || "media")), " · ", t("prio." + b.priority), " · ", (b.zones || []).join(", ")),
    h("p", { class: "state state-" + b.state, id: "bc-state", dataset: { state: b.state, id: b.id } }, t("state." + b.state)));
  if (b.reason) card.append(h("p", { class: "muted" }, b.reason));
  for (const d of b.devices || []) {
    const label = d.id + ": " + d.frames_played + " / " + d.frames_expected;
    card.append(h("div", { class: "dev-progress" }, progressBar(d.frames_played, d.frames_expected || b.packets, label)));
  }
  if (!terminal(b.state) && ROLE !== "police") {
    card.append(h("button", { class: "danger", onclick: async () => {
      try { await api("DELETE", "/api/v1/broadcasts/" + b.id); } catch (e) { toast(e.message, true); }
    } }, t("bc.stop")));
  }
  return card;
}

// ---------- pages ----------

const pagesImpl = {
  async home(main) {
    const alarms = h("section", { class: "card", id: "alarms" }, h("h2", { i18n: "home.alarms" }));
    const active = h("section", { id: "active" }, h("h2", { i18n: "home.active" }));
    const zones = h("section", { class: "card", id: "zones" }, h("h2", { i18n: "home.devices" }));
    const next = h("section", { class: "card", id: "next" }, h("h2", { i18n: "home.next" }));
    // The uplink card (GET /api/v1/uplink, docs/uplink.md), shown only when configured.
    const uplink = h("section", { class: "card", id: "uplink", hidden: true }, h("h2", { i18n: "home.uplink" }));
    main.append(alarms, active);
    if (ROLE !== "police") main.append(zones, next, uplink);
    every(2000, async () => {
      await refreshHealth();
      const problems = healthProblems.map(serviceAlarm);
      if (ROLE !== "police") {
        try {
          const u = await api("GET", "/api/v1/uplink");
          uplink.hidden = !u.enabled;
          const cmds = Object.entries(u.commands || {}).map(([k, v]) => k + " " + v).join(", ") || "—";
          uplink.replaceChildren(h("h2", { i18n: "home.uplink" }),
            h("p", { class: u.connected ? "ok" : "bad", id: "uplink-state" }, t(u.connected ? "uplink.up" : "uplink.down")),
            h("p", { id: "uplink-outbox" }, t("uplink.outbox", { n: u.outbox.depth, age: Math.round(u.oldest_pending_seconds) })),
            h("p", { class: "muted" }, t("uplink.commands", { list: cmds })),
            ...(u.last_error && !u.connected ? [h("p", { class: "muted" }, u.last_error)] : []));
        } catch (e) { /* an older daemon without the uplink */ }
        try {
          const devs = await api("GET", "/api/v1/devices");
          const byZone = {};
          for (const d of devs) for (const z of (d.zones && d.zones.length ? d.zones : ["—"])) (byZone[z] ||= []).push(d);
          zones.replaceChildren(h("h2", { i18n: "home.devices" }), ...Object.keys(byZone).sort().map((z) => {
            const on = byZone[z].filter((d) => d.online).length;
            return h("div", { class: "zone-row" }, h("strong", {}, t("zone") + " " + z), " ",
              h("span", { class: "ok" }, t("home.online", { n: on })), " ",
              h("span", { class: byZone[z].length - on ? "bad" : "muted" }, t("home.offline", { n: byZone[z].length - on })));
          }));
          for (const d of devs) if (!d.online) problems.push(t("alarm.offline", { id: d.name || d.id }));
          const bcs = await api("GET", "/api/v1/broadcasts");
          const live = bcs.filter((b) => !terminal(b.state)).slice(0, 3);
          const cards = [];
          for (const b of live) cards.push(broadcastCard(await api("GET", "/api/v1/broadcasts/" + b.id)));
          active.replaceChildren(h("h2", { i18n: "home.active" }), ...(cards.length ? cards : [h("p", { class: "muted", i18n: "home.none" })]));
        } catch (e) { problems.push(e.message); }
        try {
          const hall = await api("GET", "/api/v1/hall");
          if (hall.board && hall.board.configured && (hall.board.alarm || !hall.board.ok)) problems.push(t("alarm.board", { reason: hall.board.reason || "" }));
        } catch (e) { /* no hall on this install */ }
        try {
          const list = await api("GET", "/api/v1/schedules");
          const upcoming = list.filter((s) => s.next).sort((a, b) => a.next.localeCompare(b.next)).slice(0, 5);
          next.replaceChildren(h("h2", { i18n: "home.next" }), ...(upcoming.length ? upcoming.map((s) =>
            h("div", { class: "row" }, h("strong", {}, fmtTime(s.next)), " ", s.name)) : [h("p", { class: "muted", i18n: "home.none" })]));
        } catch (e) {
          next.replaceChildren(h("h2", { i18n: "home.next" }), h("p", { class: "muted", i18n: "sched.unavailable" }));
        }
      } else {
        active.remove();
      }
      if (ROLE !== "head") {
        try {
          const cams = await api("GET", "/api/v1/cameras");
          for (const c of cams) if (c.state === "error" || c.state === "down" || c.state === "unsupported") problems.push(t("alarm.camera", { id: c.name || c.id, reason: c.reason || c.state }));
        } catch (e) { /* cameras not enabled */ }
      }
      alarms.replaceChildren(h("h2", { i18n: "home.alarms" }), ...(problems.length ? problems.map((p) => h("p", { class: "bad" }, "⚠ " + p)) : [h("p", { class: "ok", i18n: "home.allgood" })]));
    });
  },

  async broadcast(main) {
    const { zones } = await zonesFromDevices().catch(() => ({ zones: [] }));
    const zoneBoxes = h("fieldset", { class: "zones" }, h("legend", { i18n: "bc.zones" }),
      ...zones.map((z) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "zone", value: z, id: "zone-" + z }), " " + t("zone") + " " + z)));
    const prio = h("select", { id: "priority" }, ...["normal", "priority", "emergency", "background"].map((p) => h("option", { value: p }, t("prio." + p))));
    const chosen = () => [...main.querySelectorAll('input[name="zone"]:checked')].map((i) => i.value);
    const status = h("section", { id: "bc-status" });
    let current = null;
    const watch = (id) => {
      current = id;
      every(500, async () => {
        if (!current) return;
        try {
          const b = await api("GET", "/api/v1/broadcasts/" + current);
          status.replaceChildren(broadcastCard(b));
          if (terminal(b.state)) clearInterval(refreshTimer);
        } catch (e) { status.replaceChildren(h("p", { class: "bad" }, e.message)); }
      });
    };
    const start = async (src) => {
      const z = chosen();
      if (!z.length) { toast(t("bc.pickzone"), true); return; }
      try {
        const b = await api("POST", "/api/v1/broadcasts", { ...src, zones: z, priority: prio.value });
        toast(t("bc.started"));
        watch(b.id);
      } catch (e) { toast(e.message, true); }
    };

    // Upload a recording with progress, then start it.
    const file = h("input", { type: "file", id: "file", accept: "audio/*,.wav,.mp3,.ogg,.opus" });
    const upBar = h("progress", { id: "upload-progress", max: 100, value: 0 });
    const upLabel = h("span", { id: "upload-label", class: "muted" });
    let mediaID = null;
    const startMedia = h("button", { class: "primary", id: "start-media", disabled: true, onclick: () => start({ media_id: mediaID }) }, t("bc.startmedia"));
    const upload = h("button", { id: "upload", onclick: () => {
      if (!file.files.length) { toast(t("bc.pickfile"), true); return; }
      const fd = new FormData();
      fd.append("file", file.files[0]);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/media");
      xhr.setRequestHeader("X-CSRF-Token", CSRF);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) { upBar.value = Math.round(100 * e.loaded / e.total); upLabel.textContent = upBar.value + "%"; } };
      xhr.onload = () => {
        let out = {};
        try { out = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 201) {
          mediaID = out.id;
          upBar.value = 100;
          upLabel.textContent = t("bc.uploaded", { s: (out.duration_ms / 1000).toFixed(1) });
          upLabel.dataset.media = out.id;
          startMedia.disabled = false;
        } else {
          upLabel.textContent = out.error || xhr.status;
          toast(out.error || String(xhr.status), true);
        }
      };
      xhr.onerror = () => toast(t("err.network"), true);
      upLabel.textContent = "0%";
      xhr.send(fd);
    } }, t("bc.upload"));

    const text = h("textarea", { id: "tts-text", rows: 3, maxlength: 2000, placeholder: t("bc.textph") });
    const speak = h("button", { class: "primary", id: "start-text", onclick: () => text.value.trim() ? start({ text: text.value.trim() }) : toast(t("bc.typetext"), true) }, t("bc.speak"));

    const talk = h("button", { class: "talk", id: "talk", type: "button" }, t("bc.hold"));
    const talkState = h("p", { id: "talk-state", class: "muted", dataset: { state: "idle" } }, t("talk.idle"));
    LiveTalk.bind(talk, talkState, () => ({ zones: chosen(), priority: prio.value }), (id) => id && watch(id));

    const stopAll = h("button", { class: "stopall", id: "stop-all", onclick: async () => {
      if (!confirm(t("bc.stopallq"))) return;
      try { const r = await api("POST", "/api/v1/broadcasts/stop-all"); toast(t("bc.stopped", { n: r.stopped })); } catch (e) { toast(e.message, true); }
    } }, t("bc.stopall"));

    main.append(
      h("section", { class: "card" }, zoneBoxes, h("label", {}, h("span", { i18n: "bc.priority" }), prio)),
      h("section", { class: "card" }, h("h2", { i18n: "bc.talk" }), talk, talkState),
      h("section", { class: "card" }, h("h2", { i18n: "bc.recording" }), file, upload, h("div", { class: "row" }, upBar, upLabel), startMedia),
      h("section", { class: "card" }, h("h2", { i18n: "bc.text" }), text, speak),
      status,
      stopAll);
  },

  async schedules(main) {
    const list = h("section", { class: "card", id: "sched-list" }, h("h2", { i18n: "sched.title" }));
    const day = h("section", { class: "card", id: "sched-day" }, h("h2", { i18n: "sched.today" }));
    const form = scheduleForm(() => load());
    main.append(day, list, form.el);
    await languages();
    await form.load();
    async function load() {
      let items;
      try { items = await api("GET", "/api/v1/schedules"); } catch (e) {
        list.replaceChildren(h("h2", { i18n: "sched.title" }), h("p", { class: "muted", id: "sched-unavailable" }, t("sched.unavailable")));
        day.remove(); form.el.remove();
        return;
      }
      list.replaceChildren(h("h2", { i18n: "sched.title" }), ...(items.length ? [] : [h("p", { class: "muted", i18n: "sched.empty" })]),
        ...items.map((s) => h("div", { class: "sched-row", dataset: { id: s.id, version: String(s.version) } },
          h("div", {}, h("strong", {}, s.name || s.id), " ", h("span", { class: s.enabled === false ? "bad" : "muted" }, s.enabled === false ? t("sched.disabled") : "")),
          h("div", { class: "muted wrap" }, s.at ? fmtTime(s.at, s.time_zone) : describeRule(s), " · ", t("zone") + " " + (s.zones || []).join(", "), " · ", t("prio." + (s.priority || "normal")), " · ", langName(s.language)),
          h("div", {}, t("sched.next"), ": ", h("strong", {}, fmtTime(s.next, s.time_zone))),
          h("div", { class: "row" },
            h("button", { onclick: () => form.edit(s) }, t("sched.edit")),
            h("button", { class: "danger", onclick: async () => {
              if (!confirm(t("sched.deleteq", { name: s.name || s.id }))) return;
              try { await api("DELETE", "/api/v1/schedules/" + s.id); load(); } catch (e) { toast(e.message, true); }
            } }, t("sched.delete"))))));
      // Today's timetable: each schedule's firings before midnight.
      const end = new Date(); end.setHours(23, 59, 59, 999);
      const rows = [];
      for (const s of items) {
        try {
          const n = await api("GET", "/api/v1/schedules/" + s.id + "/next?n=20");
          for (const at of n.next || []) if (new Date(at) <= end) rows.push([at, s]);
        } catch (e) { /* skip */ }
      }
      rows.sort((a, b) => a[0].localeCompare(b[0]));
      day.replaceChildren(h("h2", { i18n: "sched.today" }), ...(rows.length ? rows.map(([at, s]) =>
        h("div", { class: "timeline-row" }, h("span", { class: "clock" }, fmtClock(at)), " ", s.name || s.id)) : [h("p", { class: "muted", i18n: "sched.nonetoday" })]));
    }
    await load();
  },

  async library(main) {
    const langs = await languages();
    const filter = languageSelect("lib-filter", langs, true);
    const list = h("section", { class: "card", id: "lib-list" });
    const file = h("input", { type: "file", id: "lib-file", accept: "audio/*,.wav,.mp3,.ogg,.opus" });
    const upName = h("input", { id: "lib-upload-name", placeholder: t("lib.name") });
    const upLang = languageSelect("lib-upload-language", langs);
    const upload = h("button", { id: "lib-upload", class: "primary", onclick: async () => {
      if (!file.files.length) { toast(t("bc.pickfile"), true); return; }
      const fd = new FormData();
      fd.append("file", file.files[0]);
      const q = new URLSearchParams({ language: upLang.value });
      if (upName.value.trim()) q.set("name", upName.value.trim());
      upload.disabled = true;
      try {
        const r = await fetch("/api/v1/media?" + q, { method: "POST", body: fd, headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" });
        const out = await r.json().catch(() => ({}));
        if (r.status !== 201) throw new Error(out.error || String(r.status));
        toast(t("bc.uploaded", { s: (out.duration_ms / 1000).toFixed(1) }));
        file.value = ""; upName.value = "";
        await load();
      } catch (e) { toast(e.message, true); } finally { upload.disabled = false; }
    } }, t("bc.upload"));
    main.append(h("section", { class: "card row" }, h("label", {}, h("span", { i18n: "lang.filter" }), filter)), list,
      h("section", { class: "card", id: "lib-add" }, h("h2", { i18n: "lib.add" }), file, h("label", {}, h("span", { i18n: "lib.name" }), upName),
        h("label", {}, h("span", { i18n: "lang.label" }), upLang), upload));
    filter.addEventListener("change", () => load());
    async function load() {
      const q = filter.value ? "?language=" + encodeURIComponent(filter.value) : "";
      let clips;
      try { clips = await api("GET", "/api/v1/media" + q); } catch (e) { list.replaceChildren(h("p", { class: "bad" }, e.message)); return; }
      list.replaceChildren(h("h2", { i18n: "lib.title" }), ...(clips.length ? [] : [h("p", { class: "muted", id: "lib-empty", i18n: "lib.empty" })]), ...clips.map((c) => {
        const key = c.id.slice(0, 12);
        const nm = h("input", { id: "lib-name-" + key, value: c.name || c.source_name, "aria-label": t("lib.name") });
        const tags = h("input", { id: "lib-tags-" + key, value: (c.tags || []).join(", "), placeholder: t("lib.tagsph"), "aria-label": t("lib.tags") });
        const lg = languageSelect("lib-lang-" + key, langs);
        lg.value = c.language || "vi";
        const err = h("p", { class: "bad lib-error", id: "lib-error-" + key });
        return h("div", { class: "lib-row", dataset: { id: c.id, language: c.language } },
          h("div", { class: "row" }, Player.button(c.id), h("strong", { class: "lib-title" }, c.name || c.source_name),
            h("span", { class: "muted" }, fmtDur(c.duration_ms) + " · " + langName(c.language) + ((c.tags || []).length ? " · " + c.tags.join(", ") : ""))),
          h("details", {}, h("summary", {}, t("lib.edit")),
            h("label", {}, h("span", { i18n: "lib.name" }), nm), h("label", {}, h("span", { i18n: "lib.tags" }), tags), h("label", {}, h("span", { i18n: "lang.label" }), lg),
            h("div", { class: "row" },
              h("button", { class: "primary", id: "lib-save-" + key, onclick: async () => {
                try {
                  await api("PATCH", "/api/v1/media/" + c.id, { name: nm.value, tags: tags.value.split(",").map((x) => x.trim()).filter(Boolean), language: lg.value });
                  toast(t("saved")); load();
                } catch (e) { err.textContent = e.message; toast(e.message, true); }
              } }, t("save")),
              h("button", { class: "danger", id: "lib-delete-" + key, onclick: async () => {
                if (!confirm(t("lib.deleteq", { name: c.name || c.source_name }))) return;
                try { await api("DELETE", "/api/v1/media/" + c.id); toast(t("lib.deleted")); load(); } catch (e) {
                  const msg = e.status === 409 && e.body && e.body.schedules ? t("lib.inuse", { list: e.body.schedules.join(", ") }) : e.message;
                  err.textContent = msg; toast(msg, true);
                }
              } }, t("delete")))),
          err);
      }));
      I18N.apply(list);
    }
    await load();
  },

  async reports(main) {
    const langs = await languages();
    const now = new Date();
    const month = h("input", { type: "month", id: "rep-month", value: now.getFullYear() + "-" + String(now.getMonth() + 1).padStart(2, "0") });
    const lang = languageSelect("rep-language", langs, true);
    const csv = h("a", { class: "button no-print", id: "rep-csv", download: "" }, t("log.csv"));
    const playout = h("a", { class: "button no-print", id: "rep-playout", download: "" }, t("rep.playout"));
    const print = h("button", { class: "no-print", id: "rep-print", onclick: () => window.print() }, t("rep.print"));
    const out = h("div", { id: "rep-out" });
    main.append(h("section", { class: "card row no-print" }, h("label", {}, h("span", { i18n: "rep.month" }), month), h("label", {}, h("span", { i18n: "lang.filter" }), lang), csv, playout, print), out);
    async function load() {
      const q = new URLSearchParams({ month: month.value });
      if (lang.value) q.set("language", lang.value);
      const c = new URLSearchParams(q); c.set("format", "csv");
      csv.href = "/api/v1/reports/monthly?" + c;
      const [y, m] = month.value.split("-").map(Number);
      const p = new URLSearchParams({ since: new Date(y, m - 1, 1).toISOString(), until: new Date(y, m, 1).toISOString(), format: "csv" });
      if (lang.value) p.set("language", lang.value);
      playout.href = "/api/v1/reports/playout?" + p;
      let r;
      try { r = await api("GET", "/api/v1/reports/monthly?" + q); } catch (e) { out.replaceChildren(h("p", { class: "bad" }, e.message)); return; }
      const mins = (s) => fmtDur(s * 1000);
      const pct = (v) => (100 * v).toFixed(1) + "%";
      out.replaceChildren(
        h("h2", { id: "rep-title" }, t("rep.title", { month: r.month }) + (r.language ? " · " + langName(r.language) : "")),
        h("p", {}, t("rep.total", { n: r.broadcasts })),
        h("section", { class: "card" }, h("h3", { i18n: "rep.airtime" }), reportChart(r.zones)),
        h("section", { class: "card" }, h("div", { class: "table-wrap" }, h("table", { id: "rep-zones" },
          h("thead", {}, h("tr", {}, ...["zone", "rep.broadcasts", "rep.minutes", "rep.languages", "rep.delivery"].map((k) => h("th", { i18n: k })))),
          h("tbody", {}, ...r.zones.map((z) => h("tr", { dataset: { zone: z.zone } }, h("td", {}, z.zone), h("td", {}, z.broadcasts), h("td", {}, mins(z.air_seconds)),
            h("td", {}, Object.entries(z.by_language).map(([l, s]) => langName(l) + " " + mins(s)).join(" · ")),
            h("td", { class: z.delivery < 0.95 ? "bad" : "ok" }, pct(z.delivery) + " (" + z.frames_played + "/" + z.frames_expected + ")"))))))),
        h("section", { class: "card", id: "rep-missed" }, h("h3", { i18n: "rep.missed" }), ...(r.most_missed.length ? [h("ol", {}, ...r.most_missed.map((sp) =>
          h("li", { dataset: { id: sp.id } }, h("strong", {}, sp.id), " (" + t("zone") + " " + sp.zones.join(", ") + "): ",
            t("rep.missedfr", { n: sp.missed, s: (sp.missed * 0.02).toFixed(0) }), " · ", pct(sp.delivery))))] : [h("p", { class: "ok", i18n: "rep.nomiss" })])));
      I18N.apply(out);
    }
    month.addEventListener("change", load);
    lang.addEventListener("change", load);
    await load();
  },

  async devices(main) {
    const map = h("section", { class: "card" }, h("h2", { i18n: "dev.map" }));
    const table = h("section", { class: "card" }, h("h2", { i18n: "dev.title" }));
    main.append(map, table);
    every(3000, async () => {
      let devs;
      try { devs = await api("GET", "/api/v1/devices"); } catch (e) { table.replaceChildren(h("p", { class: "bad" }, e.message)); return; }
      map.replaceChildren(h("h2", { i18n: "dev.map" }), deviceMap(devs));
      if (table.querySelector("input:focus")) return; // do not disturb a volume change
      table.replaceChildren(h("h2", { i18n: "dev.title" }), h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["dev.name", "dev.zones", "dev.state", "dev.volume", "dev.actions"].map((k) => h("th", { i18n: k })))),
        h("tbody", {}, ...devs.map((d) => {
          const vol = h("input", { type: "range", min: 0, max: 100, value: d.volume, "aria-label": t("dev.volume") });
          vol.addEventListener("change", async () => {
            try { await api("POST", "/api/v1/devices/" + d.id + "/volume", { volume: Number(vol.value) }); toast(t("dev.volset", { n: vol.value })); } catch (e) { toast(e.message, true); }
          });
          return h("tr", { class: d.online ? "" : "offline" },
            h("td", {}, d.name || d.id, h("div", { class: "muted" }, d.id)),
            h("td", {}, (d.zones || []).join(", ")),
            h("td", { class: d.online ? "ok" : "bad" }, d.online ? t("dev.online") : t("dev.offline")),
            h("td", {}, vol),
            h("td", {}, h("button", { onclick: async () => {
              try { const r = await api("POST", "/api/v1/devices/" + d.id + "/ping"); toast(t("dev.pong", { ms: r.rtt_ms.toFixed(0) })); } catch (e) { toast(e.message, true); }
            } }, t("dev.ping"))));
        })))));
    });
  },

  async cameras(main) {
    const grid = h("section", { class: "cam-grid", id: "cam-grid" });
    main.append(grid);
    let cams;
    try { cams = await api("GET", "/api/v1/cameras"); } catch (e) { grid.append(h("p", { class: "bad" }, e.message)); return; }
    if (!cams.length) grid.append(h("p", { class: "muted", i18n: "cam.none" }));
    for (const c of cams) grid.append(Cameras.tile(c));
    window.addEventListener("pagehide", Cameras.stopAll);
  },

  async log(main) {
    const since = h("input", { type: "date", id: "log-since" });
    const until = h("input", { type: "date", id: "log-until" });
    const filter = h("input", { type: "search", id: "log-filter", placeholder: t("log.filter") });
    const csv = h("a", { class: "button", id: "log-csv", href: "/api/v1/audit?format=csv" }, t("log.csv"));
    const json = h("a", { class: "button", id: "log-json", href: "/api/v1/audit" }, t("log.json"));
    const out = h("section", { class: "card" });
    const query = () => {
      const q = new URLSearchParams({ limit: "500" });
      if (since.value) q.set("since", new Date(since.value + "T00:00:00").toISOString());
      if (until.value) q.set("until", new Date(until.value + "T23:59:59").toISOString());
      return q;
    };
    const load = async () => {
      const q = query();
      const c = new URLSearchParams(q); c.set("format", "csv"); c.delete("limit");
      csv.href = "/api/v1/audit?" + c;
      c.delete("format"); json.href = "/api/v1/audit?" + c;
      let events;
      try { events = await api("GET", "/api/v1/audit?" + q); } catch (e) { out.replaceChildren(h("p", { class: "bad" }, e.message)); return; }
      const f = filter.value.trim().toLowerCase();
      events = events.reverse().filter((e) => !f || [e.actor, e.action, e.target, JSON.stringify(e.detail || "")].join(" ").toLowerCase().includes(f));
      out.replaceChildren(h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["log.time", "log.actor", "log.action", "log.target"].map((k) => h("th", { i18n: k })))),
        h("tbody", {}, ...events.map((e) => h("tr", {}, h("td", {}, fmtTime(e.time)), h("td", {}, e.actor || ""), h("td", {}, e.action), h("td", {}, e.target || "")))))));
    };
    for (const el of [since, until]) el.addEventListener("change", load);
    filter.addEventListener("input", load);
    main.append(h("section", { class: "card row" }, h("label", {}, h("span", { i18n: "log.since" }), since), h("label", {}, h("span", { i18n: "log.until" }), until), filter, csv, json), out);
    await load();
  },

  async users(main) {
    const list = h("section", { class: "card", id: "user-list" });
    const name = h("input", { id: "new-username", autocomplete: "off", autocapitalize: "none" });
    const pw = h("input", { id: "new-password", type: "password", autocomplete: "new-password" });
    const role = h("select", { id: "new-role" }, ...["head", "police", "admin"].map((r) => h("option", { value: r }, t("role." + r))));
    const cams = h("input", { id: "new-cameras", placeholder: "cam-01, cam-02" });
    const parseCams = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
    main.append(list, h("section", { class: "card" }, h("h2", { i18n: "users.create" }),
      h("label", {}, h("span", { i18n: "login.username" }), name), h("label", {}, h("span", { i18n: "login.password" }), pw),
      h("label", {}, h("span", { i18n: "users.role" }), role), h("label", {}, h("span", { i18n: "users.cameras" }), cams),
      h("button", { class: "primary", onclick: async () => {
        try { await api("POST", "/api/v1/users", { username: name.value.trim(), password: pw.value, role: role.value, cameras: parseCams(cams.value) }); name.value = pw.value = cams.value = ""; toast(t("saved")); load(); } catch (e) { toast(e.message, true); }
      } }, t("users.create"))));
    async function load() {
      const users = await api("GET", "/api/v1/users");
      list.replaceChildren(h("h2", { i18n: "users.title" }), ...users.map((u) => {
        const r = h("select", {}, ...["head", "police", "admin"].map((x) => h("option", { value: x, selected: x === u.role }, t("role." + x))));
        const c = h("input", { value: (u.cameras || []).join(", "), "aria-label": t("users.cameras") });
        return h("div", { class: "user-row" }, h("strong", {}, u.username), r, c,
          h("button", { onclick: async () => {
            try { await api("PUT", "/api/v1/users/" + encodeURIComponent(u.username), { role: r.value, cameras: parseCams(c.value) }); toast(t("saved")); } catch (e) { toast(e.message, true); }
          } }, t("save")),
          h("button", { onclick: async () => {
            const p = prompt(t("users.newpw", { name: u.username }));
            if (!p) return;
            try { await api("PUT", "/api/v1/users/" + encodeURIComponent(u.username), { password: p }); toast(t("saved")); } catch (e) { toast(e.message, true); }
          } }, t("users.resetpw")),
          h("button", { class: "danger", onclick: async () => {
            if (!confirm(t("users.deleteq", { name: u.username }))) return;
            try { await api("DELETE", "/api/v1/users/" + encodeURIComponent(u.username)); load(); } catch (e) { toast(e.message, true); }
          } }, t("delete")));
      }));
    }
    await load();
  },

  async account(main) {
    const oldPw = h("input", { type: "password", id: "old-password", autocomplete: "current-password" });
    const newPw = h("input", { type: "password", id: "new-password", autocomplete: "new-password" });
    main.append(h("section", { class: "card" }, h("h2", { i18n: "account.title" }),
      h("label", {}, h("span", { i18n: "account.old" }), oldPw), h("label", {}, h("span", { i18n: "account.new" }), newPw),
      h("button", { class: "primary", onclick: async () => {
        try { await api("PUT", "/api/v1/me/password", { old_password: oldPw.value, new_password: newPw.value }); oldPw.value = newPw.value = ""; toast(t("account.changed")); } catch (e) { toast(e.message, true); }
      } }, t("account.change"))));
  },

  // drafts is "Gửi xã": the head writes a bulletin for the commune
  // (POST /api/v1/uplink/drafts) and sees what was submitted and whether
  // it has reached the commune's broker yet (GET). The commune's decision
  // is not known in the village.
  async drafts(main) {
    const title = h("input", { id: "draft-title", maxlength: 200, autocomplete: "off" });
    const text = h("textarea", { id: "draft-text", rows: 5, placeholder: t("drafts.textph") });
    const count = h("span", { class: "muted", id: "draft-count" });
    const urgency = h("select", { id: "draft-urgency" }, ...["routine", "emergency"].map((u) => h("option", { value: u }, t("drafts.urg." + u))));
    const zones = h("fieldset", { class: "zones", id: "draft-zones" }, h("legend", { i18n: "drafts.zones" }));
    const error = h("p", { class: "error", id: "draft-error", role: "alert", hidden: true });
    const list = h("section", { class: "card", id: "draft-list" }, h("h2", { i18n: "drafts.list" }));
    const form = h("section", { class: "card", id: "draft-form" }, h("h2", { i18n: "drafts.new" }),
      h("label", {}, h("span", { i18n: "drafts.title" }), title),
      h("label", {}, h("span", {}, t("drafts.text"), " ", count), text),
      h("label", {}, h("span", { i18n: "drafts.urgency" }), urgency),
      zones, error,
      h("button", { class: "primary", id: "draft-submit", onclick: submit }, t("drafts.submit")));
    const bytes = (s) => new TextEncoder().encode(s).length;
    const counted = () => { count.textContent = t("drafts.bytes", { n: bytes(text.value) }); };
    text.addEventListener("input", counted);
    counted();
    const fail = (msg) => { error.textContent = msg; error.hidden = false; };

    async function submit() {
      error.hidden = true;
      const d = { title: title.value.trim(), text: text.value.trim(), urgency: urgency.value,
        zones: [...zones.querySelectorAll("input:checked")].map((i) => i.value) };
      if (!d.text) return fail(t("drafts.needtext"));
      if (bytes(d.text) > 4000) return fail(t("drafts.toolong"));
      if (bytes(d.title) > 200) return fail(t("drafts.titlelong"));
      if (d.urgency === "emergency" && !confirm(t("drafts.emergencyq"))) return;
      try {
        await api("POST", "/api/v1/uplink/drafts", d);
        title.value = text.value = ""; urgency.value = "routine"; counted();
        for (const i of zones.querySelectorAll("input")) i.checked = false;
        toast(t("drafts.submitted"));
        watch();
      } catch (e) { fail(e.status === 409 ? t("drafts.off") : t("drafts.failed", { reason: e.message })); }
    }

    function row(d) {
      const st = h("span", { class: "draft-status " + (d.status === "sent" ? "ok" : d.status === "dropped" ? "bad" : "muted"), dataset: { status: d.status } },
        t("drafts.st." + d.status));
      return h("div", { class: "draft-row", dataset: { id: d.id, status: d.status } },
        h("div", {}, h("strong", { class: "wrap" }, d.title || t("drafts.untitled")), " · ", st),
        h("div", { class: "muted" }, t("drafts.urg." + d.urgency), " · ", d.zones && d.zones.length ? t("zone") + " " + d.zones.join(", ") : t("drafts.allzones")),
        h("div", { class: "muted" }, t("drafts.by", { who: d.author, at: fmtTime(d.submitted) }),
          d.status === "sent" ? " · " + t("drafts.sentat", { at: fmtTime(d.sent) }) : ""),
        h("p", { class: "draft-text wrap" }, d.text));
    }

    let loads = 0;
    async function load() {
      const my = ++loads;
      let items;
      try { items = await api("GET", "/api/v1/uplink/drafts"); } catch (e) {
        if (my !== loads) return; // a later load answers
        clearInterval(refreshTimer);
        if (e.status !== 409) { list.replaceChildren(h("h2", { i18n: "drafts.list" }), h("p", { class: "bad" }, e.message)); return; }
        form.remove();
        list.replaceChildren(h("p", { class: "muted", id: "drafts-off" }, t("drafts.off")));
        return;
      }
      if (my !== loads) return;
      list.replaceChildren(h("h2", { i18n: "drafts.list" }), h("p", { class: "muted" }, t("drafts.nodecision")),
        ...(items.length ? items.map(row) : [h("p", { class: "muted", id: "drafts-empty" }, t("drafts.empty"))]));
      if (!items.some((d) => d.status === "queued")) clearInterval(refreshTimer);
    }
    // watch reloads the list every 5 s while a draft waits in the outbox,
    // so it shows as sent once the broker has it.
    const watch = () => every(5000, load);

    main.append(form, list);
    const { zones: zs } = await zonesFromDevices().catch(() => ({ zones: [] }));
    zones.append(...zs.map((z) => h("label", { class: "check" }, h("input", { type: "checkbox", value: z, id: "draft-zone-" + z }), " " + t("zone") + " " + z)));
    zones.hidden = !zs.length;
    watch();
  },
};

// ---------- schedule form ----------

// fmtDur shows milliseconds as m:ss.
const fmtDur = (ms) => { const s = Math.round((ms || 0) / 1000); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); };

// languages are the language tags from the server, loaded once.
let languagesCache = null;
async function languages() {
  if (!languagesCache) languagesCache = await api("GET", "/api/v1/languages").catch(() => [{ code: "vi", name: "Tiếng Việt", english: "Vietnamese", voice: "vi" }]);
  return languagesCache;
}
const langName = (code) => {
  const l = (languagesCache || []).find((x) => x.code === (code || "vi"));
  return l ? (I18N.lang === "vi" ? l.name : l.english) : (code || "vi");
};
function languageSelect(id, list, withAll) {
  return h("select", { id }, ...(withAll ? [h("option", { value: "" }, t("lang.all"))] : []),
    ...list.map((l) => h("option", { value: l.code }, (I18N.lang === "vi" ? l.name : l.english) + (l.voice ? "" : " " + t("lang.novoice")))));
}

// Player plays library clips on the phone through one shared audio element.
const Player = {
  audio: null, id: null, buttons: new Map(),
  button(id) {
    const b = h("button", { type: "button", class: "play", "aria-label": t("lib.play"), dataset: { play: id }, onclick: (e) => { e.preventDefault(); Player.toggle(id); } }, "▶");
    this.buttons.set(id, b);
    return b;
  },
  toggle(id) {
    if (!this.audio) {
      this.audio = h("audio", { id: "player", preload: "none" });
      document.body.append(this.audio);
      for (const ev of ["playing", "pause", "ended", "error"]) this.audio.addEventListener(ev, () => this.sync(ev));
    }
    if (this.id === id && !this.audio.paused) { this.audio.pause(); return; }
    this.id = id;
    this.audio.src = "/api/v1/media/" + id + "/audio";
    this.audio.play().catch((e) => toast(e.message, true));
    this.sync("loading");
  },
  sync(ev) {
    for (const [id, b] of this.buttons) {
      const on = id === this.id && ev === "playing";
      b.textContent = on ? "■" : "▶";
      b.classList.toggle("on", on);
      b.dataset.state = id === this.id ? ev : "";
    }
    if (ev === "error") toast(t("lib.playfail"), true);
  },
};

// describeRule reads a daily rule as people say it ("Daily 06:30"); other
// rules are shown as written.
function describeRule(s) {
  const m = /^FREQ=DAILY;BYHOUR=(\d+);BYMINUTE=(\d+)(;BYSECOND=0)?$/.exec(s.rrule || "");
  if (m) return t("sched.when.daily") + " " + m[1].padStart(2, "0") + ":" + m[2].padStart(2, "0");
  return s.rrule || s.cron || "";
}

function scheduleForm(done) {
  let editing = null;
  let clips = [];
  let zoneList = [];
  const name = h("input", { id: "sched-name" });
  const kind = h("select", { id: "sched-when" }, ...["daily", "once", "rrule"].map((k) => h("option", { value: k }, t("sched.when." + k))));
  const time = h("input", { type: "time", id: "sched-time", value: "06:00" });
  const date = h("input", { type: "datetime-local", id: "sched-at" });
  const rrule = h("input", { id: "sched-rrule", placeholder: "FREQ=WEEKLY;BYDAY=MO;BYHOUR=6;BYMINUTE=0" });
  const source = h("select", { id: "sched-source" }, h("option", { value: "media" }, t("sched.src.media")), h("option", { value: "text" }, t("sched.src.text")));
  const text = h("textarea", { id: "sched-text", rows: 2, placeholder: t("bc.textph") });
  const mediaList = h("div", { id: "sched-media-list", class: "pick-list", role: "radiogroup" });
  const lang = h("select", { id: "sched-language" });
  const zones = h("fieldset", { class: "zones", id: "sched-zones" }, h("legend", { i18n: "bc.zones" }));
  const prio = h("select", { id: "sched-priority" }, ...["normal", "priority", "emergency", "background"].map((p) => h("option", { value: p }, t("prio." + p))));
  const preview = h("ol", { id: "sched-preview", class: "preview" });
  const previewMsg = h("p", { id: "sched-preview-msg", class: "muted" });
  const title = h("h2", { i18n: "sched.new" });
  const wrap = (key, input) => h("label", {}, h("span", { i18n: key }), input);
  const timeL = wrap("sched.time", time), dateL = wrap("sched.at", date), ruleL = wrap("sched.rrule", rrule);
  const textL = wrap("bc.text", text);
  const mediaL = h("div", { class: "field" }, h("span", { class: "label", i18n: "sched.media" }), mediaList);
  const el = h("section", { class: "card", id: "sched-form" }, title,
    wrap("sched.name", name), wrap("sched.source", source), mediaL, textL, wrap("lang.label", lang), zones,
    wrap("sched.whenlabel", kind), timeL, dateL, ruleL, wrap("bc.priority", prio),
    h("section", { class: "preview-box" }, h("h3", { i18n: "sched.preview" }), preview, previewMsg),
    h("div", { class: "row" }, h("button", { class: "primary", id: "sched-save", onclick: save }, t("save")),
      h("button", { id: "sched-cancel", onclick: () => reset() }, t("cancel"))));

  function show() {
    timeL.hidden = kind.value !== "daily"; dateL.hidden = kind.value !== "once"; ruleL.hidden = kind.value !== "rrule";
    mediaL.hidden = source.value !== "media"; textL.hidden = source.value !== "text";
  }
  const chosenMedia = () => { const r = mediaList.querySelector('input[name="sched-media"]:checked'); return r ? r.value : ""; };
  const chosenZones = () => [...zones.querySelectorAll('input[name="sched-zone"]:checked')].map((i) => i.value);
  function renderZones(extra) {
    const all = [...new Set([...zoneList, ...(extra || [])])].sort();
    const checked = new Set(chosenZones().concat(extra || []));
    zones.replaceChildren(h("legend", { i18n: "bc.zones" }), ...all.map((z) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "sched-zone", value: z, id: "sched-zone-" + z, checked: checked.has(z), onchange: refresh }), " " + t("zone") + " " + z)));
    if (!all.length) zones.append(h("p", { class: "muted", i18n: "sched.nozones" }));
  }
  function renderMedia(selected) {
    mediaList.replaceChildren(...(clips.length ? clips.map((c) => {
      const radio = h("input", { type: "radio", name: "sched-media", value: c.id, id: "pick-" + c.id.slice(0, 12), checked: c.id === selected,
        onchange: () => { lang.value = c.language || "vi"; refresh(); } });
      return h("div", { class: "pick", dataset: { id: c.id } },
        h("label", { class: "pick-main", for: "pick-" + c.id.slice(0, 12) }, radio,
          h("span", {}, h("strong", {}, c.name || c.source_name), h("span", { class: "muted" }, " " + fmtDur(c.duration_ms) + " · " + langName(c.language)))),
        Player.button(c.id));
    }) : [h("p", { class: "muted" }, t("sched.nomedia"), " ", h("a", { href: "/app/library" }, t("nav.library")))]));
  }
  function body() {
    const s = { name: name.value.trim(), zones: chosenZones(), priority: prio.value, language: lang.value,
      source: source.value === "media" ? { kind: "media", media_id: chosenMedia() } : { kind: "text", text: text.value.trim() } };
    if (kind.value === "once") s.at = date.value ? new Date(date.value).toISOString() : "";
    else if (kind.value === "daily") { const [hh, mm] = (time.value || "06:00").split(":"); s.rrule = "FREQ=DAILY;BYHOUR=" + Number(hh) + ";BYMINUTE=" + Number(mm) + ";BYSECOND=0"; }
    else {
      // The rule field takes an RRULE (RFC 5545 §3.3.10) or a cron line, as the API does.
      const r = rrule.value.trim();
      if (/^(RRULE:|FREQ=|DTSTART)/i.test(r)) s.rrule = r; else s.cron = r;
    }
    if (!s.at) delete s.at;
    return s;
  }
  // refresh shows the next five firings as the form stands, from the
  // server's scheduler code (POST /api/v1/schedules/preview).
  let timer = null, seq = 0;
  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const my = ++seq;
      const s = body();
      if (editing) s.id = editing.id;
      try {
        const r = await api("POST", "/api/v1/schedules/preview", s);
        if (my !== seq) return;
        preview.replaceChildren(...r.next.map((at) => h("li", { dataset: { at } }, fmtTime(at, r.time_zone))));
        previewMsg.textContent = r.next.length ? "" : t("sched.never");
        el.dataset.preview = String(r.next.length);
      } catch (e) {
        if (my !== seq) return;
        preview.replaceChildren();
        previewMsg.textContent = e.message;
        el.dataset.preview = "error";
      }
    }, 250);
  }
  for (const input of [name, kind, time, date, rrule, source, text, lang, prio]) {
    input.addEventListener("input", () => { show(); refresh(); });
    input.addEventListener("change", () => { show(); refresh(); });
  }
  async function load() {
    const [list, langs, z] = await Promise.all([api("GET", "/api/v1/media").catch(() => []), languages(), zonesFromDevices().catch(() => ({ zones: [] }))]);
    clips = list; zoneList = z.zones;
    lang.replaceChildren(...languageSelect("x", langs).children);
    lang.value = "vi";
    renderMedia(""); renderZones([]); show(); refresh();
  }
  function reset() {
    editing = null; title.textContent = t("sched.new");
    name.value = text.value = rrule.value = ""; kind.value = "daily"; time.value = "06:00"; source.value = "media"; lang.value = "vi"; prio.value = "normal";
    renderMedia(""); for (const i of zones.querySelectorAll("input")) i.checked = false;
    el.dataset.editing = "";
    show(); refresh();
  }
  async function save() {
    const s = body();
    if (!s.name) { toast(t("sched.needname"), true); return; }
    if (!s.zones.length) { toast(t("bc.pickzone"), true); return; }
    if (s.source.kind === "media" && !s.source.media_id) { toast(t("sched.pickmedia"), true); return; }
    try {
      if (editing) await api("PUT", "/api/v1/schedules/" + editing.id, { ...editing, ...s, at: s.at, rrule: s.rrule, cron: s.cron, next: undefined });
      else await api("POST", "/api/v1/schedules", s);
      toast(t("saved")); reset(); done();
    } catch (e) { toast(e.message, true); }
  }
  function edit(s) {
    editing = s;
    el.dataset.editing = s.id;
    title.textContent = t("sched.editing", { name: s.name || s.id });
    name.value = s.name || ""; prio.value = s.priority || "normal"; lang.value = s.language || "vi";
    const src = s.source || {};
    source.value = src.kind === "text" ? "text" : "media";
    text.value = src.text || "";
    renderMedia(src.media_id || "");
    for (const i of zones.querySelectorAll("input")) i.checked = false;
    renderZones(s.zones || []);
    const daily = /^FREQ=DAILY;BYHOUR=(\d+);BYMINUTE=(\d+)(;BYSECOND=0)?$/.exec(s.rrule || "");
    if (s.at) {
      kind.value = "once";
      const d = new Date(s.at);
      date.value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    } else if (daily) { kind.value = "daily"; time.value = daily[1].padStart(2, "0") + ":" + daily[2].padStart(2, "0"); }
    else { kind.value = "rrule"; rrule.value = s.rrule || s.cron || ""; }
    show(); refresh();
    el.scrollIntoView({ behavior: "smooth" });
  }
  show();
  return { el, edit, load };
}

// ---------- report chart ----------

// reportChart draws air time per zone as horizontal bars stacked by
// priority, in plain SVG (no chart library; the village may be offline).
function reportChart(zones) {
  const NS = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const prios = ["emergency", "priority", "normal", "background"];
  const rowH = 34, left = 92, width = 300, top = 8;
  const height = top + Math.max(zones.length, 1) * rowH + 40;
  const svg = el("svg", { viewBox: "0 0 " + (left + width + 10) + " " + height, class: "chart", id: "rep-chart", role: "img", "aria-label": t("rep.airtime") });
  if (!zones.length) { svg.append(el("text", { x: 10, y: 24 }, t("rep.empty"))); return svg; }
  const maxS = Math.max(...zones.map((z) => z.air_seconds), 1);
  zones.forEach((z, i) => {
    const y = top + i * rowH;
    svg.append(el("text", { x: 4, y: y + 20, class: "chart-label" }, t("zone") + " " + z.zone));
    let x = left;
    for (const p of prios) {
      const s = z.by_priority[p] || 0;
      if (!s) continue;
      const w = Math.max(1, width * s / maxS);
      const r = el("rect", { x, y: y + 4, width: w, height: rowH - 10, class: "bar-" + p, "data-zone": z.zone, "data-priority": p });
      r.append(el("title", {}, t("zone") + " " + z.zone + " · " + t("prio." + p) + ": " + fmtDur(s * 1000)));
      svg.append(r);
      x += w;
    }
    svg.append(el("text", { x: Math.min(x + 4, left + width - 40), y: y + 20, class: "chart-value" }, fmtDur(z.air_seconds * 1000)));
  });
  let lx = 4;
  const ly = top + zones.length * rowH + 18;
  for (const p of prios) {
    svg.append(el("rect", { x: lx, y: ly - 10, width: 12, height: 12, class: "bar-" + p }));
    const label = t("prio." + p);
    svg.append(el("text", { x: lx + 16, y: ly, class: "chart-legend" }, label));
    lx += 24 + label.length * 8;
  }
  return svg;
}

// ---------- device map ----------

function deviceMap(devs) {
  const pts = devs.filter((d) => d.lat || d.lon);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 320 200");
  svg.setAttribute("class", "map");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("dev.map"));
  if (!pts.length) {
    const tx = document.createElementNS(NS, "text");
    tx.setAttribute("x", 160); tx.setAttribute("y", 100); tx.setAttribute("text-anchor", "middle");
    tx.textContent = t("dev.nomap");
    svg.append(tx);
    return svg;
  }
  const lats = pts.map((d) => d.lat), lons = pts.map((d) => d.lon);
  const [la0, la1, lo0, lo1] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  const sx = (lo) => 20 + 280 * (lo1 > lo0 ? (lo - lo0) / (lo1 - lo0) : 0.5);
  const sy = (la) => 180 - 160 * (la1 > la0 ? (la - la0) / (la1 - la0) : 0.5);
  for (const d of pts) {
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", sx(d.lon)); c.setAttribute("cy", sy(d.lat)); c.setAttribute("r", 7);
    c.setAttribute("class", d.online ? "dot on" : "dot off");
    const title = document.createElementNS(NS, "title");
    title.textContent = (d.name || d.id) + " — " + (d.online ? t("dev.online") : t("dev.offline"));
    c.append(title);
    svg.append(c);
  }
  return svg;
}

// ---------- cameras over WHEP ----------

const Cameras = {
  sessions: new Map(), // camera id -> {pc, location}
  tile(c) {
    const video = h("video", { autoplay: true, muted: true, playsinline: true, id: "video-" + c.id });
    video.muted = true;
    const msg = h("p", { class: "cam-msg", id: "cam-msg-" + c.id });
    const tile = h("figure", { class: "cam", dataset: { id: c.id, state: c.state } }, video, h("figcaption", {}, c.name || c.id), msg);
    // The video element says when it plays: the tile's status follows it,
    // not a guess from the connection, so "connecting" never sits on a
    // playing picture.
    video.addEventListener("playing", () => { msg.textContent = ""; tile.dataset.status = "playing"; });
    video.addEventListener("waiting", () => { if (tile.dataset.status === "playing") tile.dataset.status = "waiting"; });
    tile.addEventListener("click", () => (video.requestFullscreen ? video.requestFullscreen() : null));
    if (c.state === "error" || c.state === "unsupported") {
      msg.textContent = t("cam.down", { reason: c.reason || c.state });
    }
    this.play(c, video, msg).catch((e) => { msg.textContent = t("cam.failed", { reason: e.message }); tile.dataset.error = e.message; });
    return tile;
  },
  async play(c, video, msg) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); video.play().catch(() => {}); };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    const tile = video.closest(".cam");
    if (tile && tile.dataset.status !== "playing") { msg.textContent = t("cam.connecting"); tile.dataset.status = "connecting"; }
    const r = await fetch("/api/v1/cameras/" + encodeURIComponent(c.id) + "/whep", {
      method: "POST", headers: { "Content-Type": "application/sdp", "X-CSRF-Token": CSRF }, body: pc.localDescription.sdp, credentials: "same-origin",
    });
    const text = await r.text();
    if (r.status !== 201) {
      pc.close();
      let why = text;
      try { why = JSON.parse(text).error; } catch (e) { /* plain text */ }
      throw new Error(r.status === 422 ? t("cam.codec", { reason: why }) : why);
    }
    this.sessions.set(c.id, { pc, location: r.headers.get("Location") });
    await pc.setRemoteDescription({ type: "answer", sdp: text });
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") msg.textContent = t("cam.lost");
    };
    const wait = setInterval(async () => {
      if (await framesDecoded(c.id) > 0 || !video.paused && video.readyState >= 2) {
        if (tile && tile.dataset.status !== "playing") { msg.textContent = ""; tile.dataset.status = "playing"; }
        clearInterval(wait);
      }
    }, 500);
  },
  stopAll() {
    for (const [, s] of Cameras.sessions) {
      s.pc.close();
      if (s.location) fetch(s.location, { method: "DELETE", headers: { "X-CSRF-Token": CSRF }, keepalive: true, credentials: "same-origin" });
    }
    Cameras.sessions.clear();
  },
};

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000); // send what we have
  });
}

// framesDecoded reports a camera's decoded video frames (used by tests and
// to clear the "connecting" message).
async function framesDecoded(id) {
  const s = Cameras.sessions.get(id);
  if (!s) return 0;
  let n = 0;
  (await s.pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded || 0; });
  return n;
}

// ---------- live speech over WHIP (RFC 9725) ----------

const LiveTalk = {
  pc: null, location: null, stream: null, starting: null, broadcast: null,
  bind(button, state, params, onStarted) {
    const set = (s, extra) => { state.dataset.state = s; state.textContent = t("talk." + s, extra); button.classList.toggle("on", s === "live"); };
    const down = async (e) => {
      e.preventDefault();
      if (this.starting || this.pc) return;
      const p = params();
      if (!p.zones.length) { toast(t("bc.pickzone"), true); return; }
      if (!window.isSecureContext || !navigator.mediaDevices) { set("insecure"); return; }
      set("connecting");
      this.starting = this.start(p).then((id) => { set("live"); onStarted(id); }).catch((err) => { set("error", { reason: err.message }); this.stop(); })
        .finally(() => { this.starting = null; });
    };
    const up = async () => {
      if (this.starting) await this.starting;
      if (this.pc) { await this.stop(); set("idle"); }
    };
    button.addEventListener("pointerdown", down);
    for (const ev of ["pointerup", "pointercancel", "pointerleave"]) button.addEventListener(ev, up);
    button.addEventListener("contextmenu", (e) => e.preventDefault());
    window.addEventListener("pagehide", () => this.stop());
  },
  async start(p) {
    // Audio processing off: speech goes out as spoken (the loudspeakers
    // are far from the phone, so there is no echo to cancel).
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addTransceiver(this.stream.getAudioTracks()[0], { direction: "sendonly", streams: [this.stream] });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    const q = new URLSearchParams({ zones: p.zones.join(","), priority: p.priority });
    const r = await fetch("/api/v1/live/whip?" + q, {
      method: "POST", headers: { "Content-Type": "application/sdp", "X-CSRF-Token": CSRF }, body: pc.localDescription.sdp, credentials: "same-origin",
    });
    const text = await r.text();
    if (r.status !== 201) {
      let why = text;
      try { why = JSON.parse(text).error; } catch (e) { /* plain text */ }
      throw new Error(why || String(r.status));
    }
    this.location = r.headers.get("Location");
    this.broadcast = this.location.split("/").pop();
    await pc.setRemoteDescription({ type: "answer", sdp: text });
    return this.broadcast;
  },
  async stop() {
    const loc = this.location;
    this.location = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    if (this.stream) this.stream.getTracks().forEach((tr) => tr.stop());
    this.stream = null;
    if (loc) {
      try { await fetch(loc, { method: "DELETE", headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin", keepalive: true }); } catch (e) { /* best effort */ }
    }
  },
};

// ---------- boot ----------

window.loalang = { framesDecoded, LiveTalk, Cameras, Player, api };

document.addEventListener("DOMContentLoaded", async () => {
  const nav = $("#nav");
  for (const [name, roles, needs] of NAV) {
    if (!roles.includes(ROLE)) continue;
    const tab = h("a", { href: "/app/" + name, class: name === PAGE ? "active" : "", "aria-current": name === PAGE ? "page" : false, i18n: "nav." + name });
    nav.append(tab);
    // A tab that needs the uplink shows once GET /api/v1/uplink says it is configured.
    if (needs === "uplink" && name !== PAGE) {
      tab.hidden = true;
      api("GET", "/api/v1/uplink").then((u) => { tab.hidden = !u.enabled; }).catch(() => {});
    }
  }
  $("#lang-switch").addEventListener("click", I18N.toggle);
  refreshHealth();
  setInterval(refreshHealth, 5000);
  const main = $("#main");
  main.append(h("h1", { i18n: "nav." + PAGE }));
  try {
    await pagesImpl[PAGE](main);
  } catch (e) {
    main.append(h("p", { class: "bad" }, e.message));
  }
  I18N.apply(document);
  document.body.dataset.ready = "1";
});
