// The commune's web app (commune/app): villages, broadcasts with
// delivery, approvals and reports. Vietnamese first, English second.
"use strict";
const T = {
  vi: {
    "app.name": "Đài truyền thanh xã", "lang.switch": "English", "nav.logout": "Đăng xuất",
    "nav.villages": "Các thôn", "nav.broadcast": "Phát thanh", "nav.approvals": "Duyệt tin", "nav.reports": "Báo cáo", "nav.cameras": "Camera",
    "login.title": "Đăng nhập", "login.user": "Tên đăng nhập", "login.pw": "Mật khẩu", "login.go": "Đăng nhập",
    "role.admin": "quản trị", "role.editor": "biên tập", "role.approver": "duyệt tin", "role.police": "công an",
    "v.online": "trực tuyến", "v.offline": "mất kết nối", "v.unknown": "chưa liên lạc", "v.speakers": "Loa hoạt động",
    "v.alarms": "Cảnh báo", "v.running": "Đang phát", "v.delivery": "Tỉ lệ nhận", "v.heard": "Tin gần nhất",
    "v.broker": "Máy chủ MQTT của xã", "v.none": "Không có",
    "b.new": "Soạn bản tin", "b.title": "Tiêu đề", "b.text": "Nội dung (đọc tự động)", "b.file": "hoặc tệp ghi âm",
    "b.villages": "Thôn nhận", "b.zones": "Khu vực (để trống: tất cả)", "b.urgency": "Mức độ",
    "b.routine": "thường", "b.emergency": "khẩn cấp", "b.expires": "Hiệu lực", "b.bypass": "Khẩn cấp: phát ngay, không chờ duyệt (được ghi nhật ký)",
    "b.save": "Gửi duyệt", "b.sent": "Đã gửi", "b.list": "Bản tin", "b.delivery": "Kết quả phát",
    "st.pending": "chờ duyệt", "st.submitted": "thôn gửi lên", "st.rejected": "bị từ chối", "st.sent": "đã phát lệnh", "st.expired": "hết hiệu lực",
    "st.scheduled": "đã hẹn giờ phát", "st.cancelled": "đã hủy lịch", "b.air": "Giờ phát (giờ Việt Nam; để trống: phát ngay khi duyệt)", "b.airs": "Phát lúc", "a.cancel": "Hủy lịch phát",
    "d.waiting": "chờ thôn nhận", "d.accepted": "đã nhận", "d.refused": "từ chối", "d.started": "đang phát", "d.played": "đã phát", "d.failed": "lỗi",
    "d.village": "Thôn", "d.step": "Trạng thái", "d.speakers": "Loa", "d.frames": "Gói tin",
    "a.approve": "Duyệt và phát", "a.reject": "Từ chối", "a.reason": "Lý do từ chối", "a.take": "Biên tập bản tin này", "a.empty": "Không có bản tin chờ duyệt.",
    "r.month": "Tháng", "r.csv": "Tải CSV", "r.air": "Phút phát", "r.count": "Số lần phát",
    "err.login": "Sai tên đăng nhập hoặc mật khẩu",
    "nav.users": "Người dùng", "u.new": "Thêm người dùng", "u.role": "Vai trò", "u.reset": "Đặt lại mật khẩu", "u.delete": "Xóa",
    "u.mine": "Đổi mật khẩu của tôi", "u.current": "Mật khẩu hiện tại", "u.newpw": "Mật khẩu mới", "u.save": "Lưu", "u.done": "Đã lưu",
    "l.title": "Nói trực tiếp", "l.badge": "trực tiếp", "l.start": "Bắt đầu nói", "l.stop": "Kết thúc", "l.on": "Đang phát trực tiếp tới các thôn đã chọn",
    "l.novillage": "Chọn ít nhất một thôn", "l.insecure": "Trình duyệt chỉ cho dùng micrô qua HTTPS", "st.live": "đang nói trực tiếp", "st.ended": "đã kết thúc",
  },
  en: {
    "app.name": "Commune radio", "lang.switch": "Tiếng Việt", "nav.logout": "Sign out",
    "nav.villages": "Villages", "nav.broadcast": "Broadcast", "nav.approvals": "Approvals", "nav.reports": "Reports", "nav.cameras": "Cameras",
    "login.title": "Sign in", "login.user": "Username", "login.pw": "Password", "login.go": "Sign in",
    "role.admin": "admin", "role.editor": "editor", "role.approver": "approver", "role.police": "police",
    "v.online": "online", "v.offline": "offline", "v.unknown": "never heard", "v.speakers": "Speakers online",
    "v.alarms": "Alarms", "v.running": "Playing now", "v.delivery": "Delivery", "v.heard": "Last event",
    "v.broker": "Commune MQTT broker", "v.none": "None",
    "b.new": "New bulletin", "b.title": "Title", "b.text": "Text (spoken)", "b.file": "or a recording",
    "b.villages": "Villages", "b.zones": "Zones (empty: all)", "b.urgency": "Priority",
    "b.routine": "routine", "b.emergency": "emergency", "b.expires": "Valid for", "b.bypass": "Emergency: send now without approval (audited)",
    "b.save": "Submit for approval", "b.sent": "Sent", "b.list": "Bulletins", "b.delivery": "Delivery",
    "st.pending": "awaiting approval", "st.submitted": "from a village", "st.rejected": "rejected", "st.sent": "sent", "st.expired": "expired",
    "st.scheduled": "scheduled", "st.cancelled": "cancelled", "b.air": "Air time (commune time; empty: on approval)", "b.airs": "Airs at", "a.cancel": "Cancel the schedule",
    "d.waiting": "waiting", "d.accepted": "accepted", "d.refused": "refused", "d.started": "playing", "d.played": "played", "d.failed": "failed",
    "d.village": "Village", "d.step": "Status", "d.speakers": "Speakers", "d.frames": "Frames",
    "a.approve": "Approve and send", "a.reject": "Reject", "a.reason": "Reason", "a.take": "Edit this bulletin", "a.empty": "Nothing awaits approval.",
    "r.month": "Month", "r.csv": "Download CSV", "r.air": "Air minutes", "r.count": "Broadcasts",
    "err.login": "Wrong username or password",
    "nav.users": "Users", "u.new": "Add a user", "u.role": "Role", "u.reset": "Reset password", "u.delete": "Delete",
    "u.mine": "Change my password", "u.current": "Current password", "u.newpw": "New password", "u.save": "Save", "u.done": "Saved",
    "l.title": "Live speech", "l.badge": "live", "l.start": "Start speaking", "l.stop": "Stop", "l.on": "On air in the chosen villages",
    "l.novillage": "Choose at least one village", "l.insecure": "The browser allows the microphone over HTTPS only", "st.live": "live now", "st.ended": "ended",
  },
};
let lang = localStorage.getItem("commune.lang") || "vi";
const t = (k) => (T[lang] && T[lang][k]) || T.vi[k] || k;
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
let me = null;

async function api(method, path, body, raw) {
  const h = { "X-CSRF-Token": sessionStorage.getItem("commune.csrf") || "" };
  let b = body;
  if (body !== undefined && !raw) { h["Content-Type"] = "application/json"; b = JSON.stringify(body); }
  const r = await fetch(path, { method, headers: h, body: b, credentials: "same-origin" });
  if (r.status === 401 && path !== "/api/v1/commune/login") {
    // The session ended: back to the sign-in form (not from the sign-in check itself).
    if (me && path !== "/api/v1/commune/me") { me = null; setTimeout(render, 0); }
    throw new Error("401");
  }
  const ct = r.headers.get("Content-Type") || "";
  const data = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((data && data.error) || r.status);
  return data;
}
function toast(msg, bad) { const el = $("#toast"); el.textContent = msg; el.className = bad ? "bad" : ""; el.hidden = false; setTimeout(() => (el.hidden = true), 4000); }
function pct(x) { return Math.round(100 * x) + "%"; }
function bar(x, label) { return `<div class="progress"><div class="bar" style="width:${Math.min(100, 100 * x)}%"></div><span>${esc(label)}</span></div>`; }
function when(s) { if (!s || s.startsWith("0001")) return "—"; return new Date(s).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", { hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit" }); }

function applyI18n() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => (el.textContent = t(el.dataset.i18n)));
}

const pages = {
  villages: { roles: ["admin", "editor", "approver", "police"], render: renderVillages },
  broadcast: { roles: ["admin", "editor", "approver"], render: renderBroadcast },
  approvals: { roles: ["admin", "editor", "approver"], render: renderApprovals },
  reports: { roles: ["admin", "editor", "approver", "police"], render: renderReports },
  users: { roles: ["admin", "editor", "approver", "police"], render: renderUsers },
};

async function render() {
  applyI18n();
  const main = $("#main");
  if (!me) {
    try { me = await api("GET", "/api/v1/commune/me"); } catch (e) { me = null; }
  }
  if (!me) {
    $("#nav").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
    main.innerHTML = `<form class="login" id="login"><h1>${t("login.title")}</h1>
      <label><span>${t("login.user")}</span><input name="username" autocomplete="username" required></label>
      <label><span>${t("login.pw")}</span><input name="password" type="password" autocomplete="current-password" required></label>
      <button class="primary" style="width:100%">${t("login.go")}</button><p id="login-err" class="error" hidden></p></form>`;
    $("#login").onsubmit = async (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      try {
        const r = await api("POST", "/api/v1/commune/login", { username: f.get("username"), password: f.get("password") });
        sessionStorage.setItem("commune.csrf", r.csrf); me = null; render();
      } catch (e) { const el = $("#login-err"); el.textContent = t("err.login"); el.hidden = false; }
    };
    return;
  }
  $("#who").textContent = `${me.username} · ${t("role." + me.role)}`;
  $("#logout").hidden = false;
  const page = (location.hash || "#villages").slice(1);
  const nav = $("#nav"); nav.hidden = false;
  nav.innerHTML = Object.keys(pages).filter((p) => pages[p].roles.includes(me.role))
    .map((p) => `<a href="#${p}" class="${p === page ? "active" : ""}">${t("nav." + p)}</a>`).join("") +
    (["admin", "police"].includes(me.role) ? `<a href="/commune/cameras">${t("nav.cameras")}</a>` : "");
  const p = pages[page] || pages.villages;
  try { await p.render(main); } catch (e) { if (e.message !== "401") main.innerHTML = `<p class="error">${esc(e.message)}</p>`; }
}

async function renderVillages(main) {
  const d = await api("GET", "/api/v1/commune/villages");
  const total = d.villages.reduce((a, v) => a + v.speakers, 0), on = d.villages.reduce((a, v) => a + v.online, 0);
  main.innerHTML = `<h1>${t("nav.villages")} · ${esc(d.commune)}</h1>
    <p class="muted">${t("v.broker")}: <span class="${d.broker_connected ? "ok" : "bad"}">${d.broker_connected ? t("v.online") : t("v.offline")}</span> · ${t("v.speakers")}: ${on}/${total}</p>` +
    d.villages.map((v) => {
      const st = v.presence || "unknown";
      const zones = v.zones.map((z) => `<span class="zone ${z.online < z.speakers ? "bad" : ""}">${esc(z.zone)} ${z.online}/${z.speakers}</span>`).join("");
      const running = v.broadcasts.map((b) => `<li><span class="badge ${b.priority === "emergency" ? "em" : ""}">${esc(b.priority)}</span> ${esc(b.actor || b.origin)} · ${esc((b.zones || []).join(", "))}</li>`).join("");
      const alarms = v.alarms.map((a) => `<li class="bad">${esc(a.component)}: ${esc(a.reason)}</li>`).join("");
      return `<section class="card ${st === "offline" ? "offline" : ""}" data-site="${esc(v.site)}">
        <div class="spread"><h2>${esc(v.site)}</h2><span class="badge ${st === "online" ? "ok" : st === "offline" ? "bad" : ""}">${t("v." + st)}</span></div>
        ${bar(v.speakers ? v.online / v.speakers : 0, `${t("v.speakers")}: ${v.online}/${v.speakers}`)}
        <div class="zones">${zones}</div>
        ${running ? `<p><b>${t("v.running")}</b></p><ul>${running}</ul>` : ""}
        ${alarms ? `<p><b>${t("v.alarms")}</b></p><ul>${alarms}</ul>` : ""}
        <p class="muted">${t("v.delivery")}: ${v.delivery.frames_expected ? pct(v.delivery_ratio) : "—"} · ${t("v.heard")}: ${when(v.last_heard)}</p>
      </section>`;
    }).join("");
}

function step(x) {
  if (x.played && !x.played.startsWith("0001")) return ["d.played", "ok"];
  if (x.failed) return ["d.failed", "bad"];
  if (x.refused) return ["d.refused", "bad"];
  if (x.started && !x.started.startsWith("0001")) return ["d.started", ""];
  if (x.accepted && !x.accepted.startsWith("0001")) return ["d.accepted", ""];
  return ["d.waiting", ""];
}

function draftCard(d) {
  const s = d.summary;
  const rows = d.deliveries.map((x) => {
    const devs = x.devices || [];
    const played = devs.filter((v) => v.frames_played > 0).length;
    const [k, cls] = step(x);
    return `<tr><td>${esc(x.site)}</td><td class="${cls}">${t(k)}${x.refused ? " (" + esc(x.refused) + ")" : ""}</td><td>${devs.length ? played + "/" + devs.length : "—"}</td></tr>`;
  }).join("");
  return `<section class="card" data-draft="${esc(d.id)}">
    <div class="spread"><h2>${esc(d.title || (d.kind === "live" ? t("l.title") : d.id))}</h2><span>${d.kind === "live" ? `<span class="badge live">${t("l.badge")}</span> ` : ""}<span class="badge ${d.urgency === "emergency" ? "em" : ""}">${t("b." + d.urgency)}</span></span></div>
    <p class="muted">${t("st." + d.status)}${d.bypass ? " · bypass" : ""} · ${esc(d.created_by)} · ${when(d.created)}</p>
    ${scheduleLine(d)}
    ${d.text ? `<p>${esc(d.text)}</p>` : d.media ? `<p class="muted">♫ ${esc(d.media.sha256.slice(0, 12))}… (${Math.round(d.media.size / 1024)} KiB)</p>` : ""}
    ${d.deliveries.length ? bar(s.speakers ? s.speakers_played / s.speakers : 0, `${t("b.delivery")}: ${s.played}/${s.villages} ${t("nav.villages").toLowerCase()} · ${s.speakers_played}/${s.speakers} ${t("d.speakers").toLowerCase()}`) +
      `<table><tr><th>${t("d.village")}</th><th>${t("d.step")}</th><th>${t("d.speakers")}</th></tr>${rows}</table>` : ""}
  </section>`;
}

async function renderBroadcast(main) {
  const f0 = document.querySelector("details[open] #draft");
  const [vil, drafts] = await Promise.all([api("GET", "/api/v1/commune/villages"), api("GET", "/api/v1/commune/drafts")]);
  const form = me.role === "editor" || me.role === "admin" ? `<details class="card"><summary><b>${t("b.new")}</b></summary><form id="draft">
    <label><span>${t("b.title")}</span><input name="title" maxlength="200"></label>
    <label><span>${t("b.text")}</span><textarea name="text" rows="3" maxlength="4000"></textarea></label>
    <label><span>${t("b.file")}</span><input name="file" type="file" accept="audio/*"></label>
    ${targetFields(vil)}
    <label><span>${t("b.expires")}</span><select name="expires_in"><option>1h</option><option selected>2h</option><option>6h</option><option>24h</option></select></label>
    <label><span>${t("b.air")}</span><input name="air_at" type="datetime-local"></label>
    <label class="check"><input type="checkbox" name="bypass"> ${t("b.bypass")}</label>
    <button class="primary">${t("b.save")}</button></form></details>` : "";
  const sent = drafts.filter((d) => ["sent", "expired", "scheduled", "cancelled", "live", "ended"].includes(d.status));
  main.innerHTML = `<h1>${t("nav.broadcast")}</h1>${liveCard(vil)}${form}<h2>${t("b.list")}</h2>` + (sent.map(draftCard).join("") || `<p class="muted">${t("v.none")}</p>`);
  if (f0) { const f = $("#draft"); f.closest("details").open = true; }
  bindScheduled(main);
  bindLive();
  const f = $("#draft");
  if (f) f.onsubmit = async (ev) => {
    ev.preventDefault();
    const fd = new FormData(f);
    try {
      const body = { title: fd.get("title"), villages: fd.getAll("v"), urgency: fd.get("urgency"), expires_in: fd.get("expires_in"), bypass: fd.get("bypass") === "on",
        zones: String(fd.get("zones") || "").split(",").map((s) => s.trim()).filter(Boolean) };
      if (fd.get("air_at")) body.air_at = fd.get("air_at");
      const file = fd.get("file");
      if (file && file.size) body.media_sha256 = (await api("POST", "/api/v1/commune/media", file, true)).sha256;
      else body.text = fd.get("text");
      const d = await api("POST", "/api/v1/commune/drafts", body);
      toast(t("st." + d.status)); render();
    } catch (e) { toast(e.message, true); }
  };
}

// targetFields are the villages, zones and urgency of a bulletin or a
// live speech.
function targetFields(vil) {
  return `<fieldset><legend><b>${t("b.villages")}</b></legend>${vil.villages.map((v) => `<label class="check"><input type="checkbox" name="v" value="${esc(v.site)}"> ${esc(v.site)}</label>`).join("")}</fieldset>
    <label><span>${t("b.zones")}</span><input name="zones" placeholder="a, b"></label>
    <label><span>${t("b.urgency")}</span><select name="urgency"><option value="routine">${t("b.routine")}</option><option value="emergency">${t("b.emergency")}</option></select></label>`;
}

// --- Live speech (Nói trực tiếp): an approver's microphone over WHIP
// (RFC 9725) to POST /api/v1/commune/live; DELETE on its Location ends
// it. live survives the page's re-renders. ---
let live = null; // { pc, stream, location } while on air

function liveCard(vil) {
  if (me.role !== "approver" && me.role !== "admin") return "";
  return `<section class="card" id="live"><h2>${t("l.title")}</h2>
    ${live ? `<p class="bad">${t("l.on")}</p>` : `<form id="liveform">${targetFields(vil)}</form>`}
    <button type="button" class="${live ? "danger" : "primary"}" id="live-toggle">${t(live ? "l.stop" : "l.start")}</button></section>`;
}

function bindLive() {
  const b = $("#live-toggle");
  if (!b) return;
  b.onclick = async () => {
    b.disabled = true;
    try { if (live) await stopLive(true); else await startLive(new FormData($("#liveform"))); } catch (e) { toast(e.message, true); await stopLive(true); }
    render();
  };
}

async function startLive(fd) {
  const villages = fd.getAll("v");
  if (!villages.length) throw new Error(t("l.novillage"));
  if (!window.isSecureContext || !navigator.mediaDevices) throw new Error(t("l.insecure"));
  const q = new URLSearchParams({ villages: villages.join(","), urgency: fd.get("urgency"),
    zones: String(fd.get("zones") || "").split(",").map((s) => s.trim()).filter(Boolean).join(",") });
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
  const pc = new RTCPeerConnection({ iceServers: [] });
  live = { pc, stream, location: null };
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly", streams: [stream] });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => { // the candidates go in the offer: no trickle ICE (RFC 9725 §4.3.1)
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
    setTimeout(resolve, 2000);
  });
  const r = await fetch("/api/v1/commune/live?" + q, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/sdp", "X-CSRF-Token": sessionStorage.getItem("commune.csrf") || "" }, body: pc.localDescription.sdp });
  const text = await r.text();
  if (r.status !== 201) { let why = text; try { why = JSON.parse(text).error; } catch (e) { /* plain text */ } throw new Error(why || String(r.status)); }
  live.location = r.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  // The commune ends a session whose browser vanished; this one notices too.
  pc.onconnectionstatechange = () => { if (live && live.pc === pc && ["failed", "closed"].includes(pc.connectionState)) stopLive(false).then(render); };
}

async function stopLive(hangup) {
  const l = live;
  live = null;
  if (!l) return;
  l.pc.close();
  l.stream.getTracks().forEach((tr) => tr.stop());
  if (hangup && l.location) { try { await api("DELETE", l.location); } catch (e) { /* ended already */ } }
}
// --- end live speech ---

// --- Scheduled bulletins (air_at): the air time on a card and an
// approver's cancel button. ---
function scheduleLine(d) {
  if (!d.air_local) return "";
  const cancel = d.status === "scheduled" && (me.role === "approver" || me.role === "admin") ? ` <button class="danger" data-cancel="${esc(d.id)}">${t("a.cancel")}</button>` : "";
  return `<p class="schedule"><b>${t("b.airs")}:</b> ${esc(d.air_local)}${cancel}</p>`;
}

function bindScheduled(main) {
  main.querySelectorAll("[data-cancel]").forEach((b) => (b.onclick = async () => {
    try { await api("POST", `/api/v1/commune/drafts/${b.dataset.cancel}/cancel`, {}); toast(t("st.cancelled")); render(); } catch (e) { toast(e.message, true); }
  }));
}
// --- end scheduled bulletins ---

async function renderApprovals(main) {
  const drafts = await api("GET", "/api/v1/commune/drafts");
  const open = drafts.filter((d) => d.status === "pending" || d.status === "submitted");
  const done = drafts.filter((d) => d.status === "rejected").slice(0, 10);
  main.innerHTML = `<h1>${t("nav.approvals")}</h1>` + (open.map((d) => draftCard(d).replace("</section>",
    (d.status === "pending" && (me.role === "approver" || me.role === "admin") ?
      `<label><span>${t("a.reason")}</span><input data-reason="${esc(d.id)}"></label><div class="row"><button class="primary" data-approve="${esc(d.id)}">${t("a.approve")}</button><button class="danger" data-reject="${esc(d.id)}">${t("a.reject")}</button></div>` : "") +
    (d.status === "submitted" && (me.role === "editor" || me.role === "admin") ? `<button data-take="${esc(d.id)}">${t("a.take")}</button>` : "") + "</section>")).join("") || `<p class="muted">${t("a.empty")}</p>`) +
    done.map(draftCard).join("");
  main.querySelectorAll("[data-approve]").forEach((b) => (b.onclick = async () => {
    try { const d = await api("POST", `/api/v1/commune/drafts/${b.dataset.approve}/approve`, {}); toast(t("st." + d.status)); render(); } catch (e) { toast(e.message, true); }
  }));
  main.querySelectorAll("[data-reject]").forEach((b) => (b.onclick = async () => {
    const reason = main.querySelector(`[data-reason="${b.dataset.reject}"]`).value;
    try { await api("POST", `/api/v1/commune/drafts/${b.dataset.reject}/reject`, { reason }); toast(t("st.rejected")); render(); } catch (e) { toast(e.message, true); }
  }));
  main.querySelectorAll("[data-take]").forEach((b) => (b.onclick = async () => {
    const d = open.find((x) => x.id === b.dataset.take);
    try { await api("POST", "/api/v1/commune/drafts", { from: d.id, title: d.title, text: d.text, villages: d.villages, zones: d.zones, urgency: d.urgency }); render(); } catch (e) { toast(e.message, true); }
  }));
}

// --- Users (Người dùng): the admin manages the staff; everyone changes
// their own password (which signs them out). ---
async function renderUsers(main) {
  const roles = ["editor", "approver", "police", "admin"];
  const opts = (sel) => roles.map((r) => `<option value="${r}" ${r === sel ? "selected" : ""}>${t("role." + r)}</option>`).join("");
  let html = `<h1>${t("nav.users")}</h1>`;
  if (me.role === "admin") {
    const users = await api("GET", "/api/v1/commune/users");
    html += `<table id="users"><tr><th>${t("login.user")}</th><th>${t("u.role")}</th><th></th></tr>` + users.map((u) =>
      `<tr data-user="${esc(u.username)}"><td>${esc(u.username)}</td><td><select data-role>${opts(u.role)}</select></td>
      <td><button data-reset>${t("u.reset")}</button> <button class="danger" data-del>${t("u.delete")}</button></td></tr>`).join("") + `</table>
      <details class="card"><summary><b>${t("u.new")}</b></summary><form id="newuser">
      <label><span>${t("login.user")}</span><input name="username" required></label>
      <label><span>${t("login.pw")}</span><input name="password" type="password" autocomplete="new-password" required></label>
      <label><span>${t("u.role")}</span><select name="role">${opts("editor")}</select></label>
      <button class="primary">${t("u.save")}</button></form></details>`;
  }
  html += `<section class="card"><h2>${t("u.mine")}</h2><form id="mypw">
    <label><span>${t("u.current")}</span><input name="current" type="password" autocomplete="current-password" required></label>
    <label><span>${t("u.newpw")}</span><input name="new" type="password" autocomplete="new-password" required></label>
    <button class="primary">${t("u.save")}</button></form></section>`;
  main.innerHTML = html;
  const act = async (fn) => { try { await fn(); toast(t("u.done")); render(); } catch (e) { toast(e.message, true); } };
  const name = (el) => el.closest("tr").dataset.user;
  main.querySelectorAll("[data-role]").forEach((el) => (el.onchange = () => act(() => api("PATCH", `/api/v1/commune/users/${encodeURIComponent(name(el))}`, { role: el.value }))));
  main.querySelectorAll("[data-reset]").forEach((el) => (el.onclick = () => {
    const pw = prompt(t("u.newpw")); if (pw) act(() => api("PATCH", `/api/v1/commune/users/${encodeURIComponent(name(el))}`, { password: pw }));
  }));
  main.querySelectorAll("[data-del]").forEach((el) => (el.onclick = () => {
    if (confirm(t("u.delete") + " " + name(el) + "?")) act(() => api("DELETE", `/api/v1/commune/users/${encodeURIComponent(name(el))}`));
  }));
  const nu = $("#newuser");
  if (nu) nu.onsubmit = (ev) => { ev.preventDefault(); const f = new FormData(nu); act(() => api("POST", "/api/v1/commune/users", { username: f.get("username"), password: f.get("password"), role: f.get("role") })); };
  $("#mypw").onsubmit = (ev) => {
    ev.preventDefault(); const f = new FormData(ev.target);
    act(async () => { await api("POST", "/api/v1/commune/me/password", { current: f.get("current"), new: f.get("new") }); me = null; });
  };
}
// --- end users ---

async function renderReports(main) {
  const month = sessionStorage.getItem("commune.month") || new Date().toISOString().slice(0, 7);
  const r = await api("GET", "/api/v1/commune/reports?month=" + month);
  const svg = await api("GET", "/api/v1/commune/reports.svg?month=" + month);
  main.innerHTML = `<h1>${t("nav.reports")}</h1><label><span>${t("r.month")}</span><input type="month" id="month" value="${esc(month)}"></label>
    <div class="card chart">${svg}</div>
    <a class="button" href="/api/v1/commune/reports.csv?month=${esc(month)}">${t("r.csv")}</a>
    <table><tr><th>${t("d.village")}</th><th>${t("r.count")}</th><th>${t("r.air")}</th><th>${t("v.delivery")}</th></tr>
    ${r.villages.map((v) => `<tr><td>${esc(v.site)}</td><td>${v.broadcasts}</td><td>${(v.air_seconds / 60).toFixed(2)}</td><td>${v.frames_expected ? pct(v.delivery_ratio) : "—"}</td></tr>`).join("")}</table>`;
  $("#month").onchange = (ev) => { sessionStorage.setItem("commune.month", ev.target.value); render(); };
}

document.addEventListener("DOMContentLoaded", () => {
  $("#lang-switch").onclick = () => { lang = lang === "vi" ? "en" : "vi"; localStorage.setItem("commune.lang", lang); render(); };
  $("#logout").onclick = async () => { try { await api("POST", "/api/v1/commune/logout"); } catch (e) {} me = null; render(); };
  window.addEventListener("hashchange", render);
  window.addEventListener("pagehide", () => stopLive(true)); // closing the peer connection ends the session at once
  render();
  setInterval(() => { if (me && !document.querySelector("form:focus-within")) render(); }, 10000);
});
