/* postel capture UI: plain JS against the Mailpit-compatible API.
 * Untrusted message data is only ever inserted as text (textContent);
 * message HTML is shown in a sandboxed iframe served with its own CSP. */
"use strict";
(function () {
  const PAGE = 50;
  const $ = (id) => document.getElementById(id);
  const state = { start: 0, query: "", messages: [], current: null, tab: "html",
                  selected: new Set(), total: 0, remote: false, relay: false };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function api(method, path, body) {
    const opt = { method: method, headers: {} };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    return fetch(path, opt).then((r) => {
      if (!r.ok) return r.text().then((t) => {
        let msg = t;
        try { msg = JSON.parse(t).Error || t; } catch (e) { /* plain text */ }
        throw new Error(msg || r.statusText);
      });
      const ct = r.headers.get("Content-Type") || "";
      return ct.indexOf("json") >= 0 ? r.json() : r.text();
    });
  }
  function addr(a) {
    if (!a) return "";
    return a.Name ? a.Name + " <" + a.Address + ">" : a.Address;
  }
  function addrs(list) { return (list || []).map(addr).join(", "); }
  function size(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " kB";
    return (n / 1048576).toFixed(1) + " MB";
  }
  function when(s) {
    const d = new Date(s);
    if (isNaN(d)) return s || "";
    const now = new Date();
    if (d.toDateString() === now.toDateString())
      return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleDateString();
  }

  /* ---- list ---- */
  function loadList() {
    const path = state.query
      ? "/api/v1/search?query=" + encodeURIComponent(state.query) + "&start=" + state.start + "&limit=" + PAGE
      : "/api/v1/messages?start=" + state.start + "&limit=" + PAGE;
    return api("GET", path).then(renderList).catch((e) => {
      /* a refused search: no stale rows, the server's reason instead */
      state.messages = [];
      $("message-list").replaceChildren();
      $("empty").hidden = true;
      $("count").textContent = e.message;
      $("count").classList.add("error");
    });
  }
  function renderList(data) {
    state.messages = data.messages || [];
    state.total = data.messages_count;
    const body = $("message-list");
    body.replaceChildren();
    for (const m of state.messages) {
      const tr = el("tr", m.Read ? "" : "unread");
      tr.dataset.id = m.ID;
      if (state.current && state.current.ID === m.ID) tr.classList.add("selected");
      const cb = el("input");
      cb.type = "checkbox";
      cb.checked = state.selected.has(m.ID);
      cb.addEventListener("click", (ev) => {
        ev.stopPropagation();
        if (cb.checked) state.selected.add(m.ID); else state.selected.delete(m.ID);
      });
      const c0 = el("td"); c0.appendChild(cb); tr.appendChild(c0);
      tr.appendChild(el("td", "", m.From ? (m.From.Name || m.From.Address) : ""));
      tr.appendChild(el("td", "", (m.To || []).map((a) => a.Name || a.Address).join(", ")));
      const subj = el("td", m.Attachments > 0 ? "subject clip" : "subject");
      subj.appendChild(el("span", "", m.Subject || "(no subject)"));
      if (m.Snippet) subj.appendChild(el("span", "snippet", " — " + m.Snippet));
      subj.title = m.Subject || "";
      tr.appendChild(subj);
      tr.appendChild(el("td", "", when(m.Created)));
      tr.appendChild(el("td", "", size(m.Size)));
      tr.addEventListener("click", () => openMessage(m.ID));
      body.appendChild(tr);
    }
    $("empty").hidden = state.messages.length > 0;
    const n = data.unread || 0;
    $("unread").textContent = n;
    $("unread").classList.toggle("zero", n === 0);
    document.title = (n ? "(" + n + ") " : "") + "postel capture";
    $("count").classList.remove("error");
    const from = state.messages.length ? state.start + 1 : 0;
    $("count").textContent = from + "–" + (state.start + state.messages.length) + " of " +
      data.messages_count + (state.query ? " matching" : "") + " (" + data.total + " total)";
    $("prev").disabled = state.start === 0;
    $("next").disabled = state.start + state.messages.length >= data.messages_count;
  }
  function selectedIds() {
    return Array.from(state.selected);
  }

  /* ---- one message ---- */
  function openMessage(id) {
    return api("GET", "/api/v1/message/" + encodeURIComponent(id)).then((m) => {
      state.current = m;
      state.remote = false;
      renderMessage(m);
      loadList();
    }).catch((e) => { $("v-status").textContent = e.message; });
  }
  function renderMessage(m) {
    $("view").hidden = false;
    document.querySelector(".layout").classList.add("viewing");
    $("v-subject").textContent = m.Subject || "(no subject)";
    $("v-from").textContent = addr(m.From);
    $("v-to").textContent = addrs(m.To);
    const cc = addrs(m.Cc);
    $("v-cc").textContent = cc;
    for (const e of document.querySelectorAll(".v-cc")) e.hidden = !cc;
    $("v-date").textContent = new Date(m.Date).toLocaleString();
    $("v-size").textContent = size(m.Size);
    $("v-download").href = "/api/v1/message/" + encodeURIComponent(m.ID) + "/raw?dl=1";
    $("v-status").textContent = "";
    $("release-box").hidden = !state.relay;
    for (const s of document.querySelectorAll("tr.selected")) s.classList.remove("selected");
    showTab(m.HTML ? state.tab : (state.tab === "html" ? "text" : state.tab));
  }
  function showTab(name) {
    state.tab = name;
    for (const b of document.querySelectorAll(".tabs button"))
      b.classList.toggle("active", b.dataset.tab === name);
    for (const t of document.querySelectorAll(".tab"))
      t.classList.toggle("active", t.id === "tab-" + name);
    const m = state.current;
    if (!m) return;
    const base = "/api/v1/message/" + encodeURIComponent(m.ID);
    if (name === "html") {
      $("remote-notice").hidden = state.remote || !m.HTML;
      $("html-frame").src = m.HTML ? "/view/" + encodeURIComponent(m.ID) + ".html" + (state.remote ? "?remote=1" : "") : "about:blank";
    } else if (name === "text") {
      $("tab-text").textContent = m.Text || "(no plain-text part)";
    } else if (name === "raw") {
      api("GET", base + "/raw").then((t) => { $("tab-raw").textContent = t; });
    } else if (name === "headers") {
      api("GET", base + "/headers").then(renderHeaders);
    } else if (name === "parts") {
      renderParts(m);
    } else if (name === "checks") {
      api("GET", base + "/checks").then(renderChecks);
    }
  }
  function renderHeaders(h) {
    const t = $("headers-table");
    t.replaceChildren();
    for (const k of Object.keys(h)) {
      for (const v of h[k]) {
        const tr = el("tr");
        tr.appendChild(el("td", "", k));
        tr.appendChild(el("td", "", v));
        t.appendChild(tr);
      }
    }
  }
  function renderParts(m) {
    const ul = $("parts-list");
    ul.replaceChildren();
    const all = (m.Attachments || []).map((a) => [a, "attachment"]).concat((m.Inline || []).map((a) => [a, "inline"]));
    if (!all.length) ul.appendChild(el("li", "muted", "No attachments or inline parts."));
    for (const [a, kind] of all) {
      const li = el("li");
      const link = el("a", "", a.FileName || ("part " + a.PartID));
      link.href = "/api/v1/message/" + encodeURIComponent(m.ID) + "/part/" + encodeURIComponent(a.PartID) + "?dl=1";
      link.setAttribute("download", a.FileName || ("part-" + a.PartID));
      li.appendChild(link);
      li.appendChild(el("span", "muted", "  " + a.ContentType + ", " + size(a.Size) + ", " + kind +
        ", part " + a.PartID + (a.ContentID ? ", cid:" + a.ContentID : "")));
      ul.appendChild(li);
    }
  }
  function section(title) {
    const s = el("div", "check-section");
    s.appendChild(el("h3", "", title));
    return s;
  }
  function line(parent, cls, text) { parent.appendChild(el("div", cls, text)); }
  function renderChecks(c) {
    const box = $("tab-checks");
    box.replaceChildren();
    const sz = section("Size");
    line(sz, c.Size.OK ? "good" : "bad", size(c.Size.Size) + " of " + size(c.Size.Limit) + " (" + c.Size.Percent.toFixed(1) + "%): " + c.Size.Note);
    box.appendChild(sz);
    const sp = section("Spam score: " + c.Spam.Score.toFixed(1) + " / " + c.Spam.Threshold.toFixed(1));
    line(sp, c.Spam.IsSpam ? "bad" : "good", c.Spam.IsSpam ? "Likely to be filtered as spam" : "Below the spam threshold");
    for (const r of c.Spam.Rules) line(sp, "", r.Score.toFixed(1) + "  " + r.Name + " — " + r.Description);
    box.appendChild(sp);
    const au = section("Authentication (SPF, DKIM, DMARC)");
    line(au, "", "From domain: " + (c.Auth.FromDomain || "(none)") + ", envelope sender domain: " + (c.Auth.MailFromDomain || "(none)"));
    line(au, c.Auth.SPF.Aligned ? "good" : "sev-warning", "SPF: " + (c.Auth.SPF.Aligned ? "aligned" : "not aligned") + " — " + c.Auth.SPF.Note);
    line(au, c.Auth.DKIM.Signatures.length ? "good" : "sev-warning", "DKIM: " + c.Auth.DKIM.Note);
    for (const s of c.Auth.DKIM.Signatures) line(au, "", "  d=" + s.Domain + " s=" + s.Selector + " a=" + s.Algorithm + (s.Aligned ? " (aligned)" : " (not aligned)") + ": " + s.Result);
    const dmarcOk = c.Auth.DMARC.Result ? c.Auth.DMARC.Result === "pass" : c.Auth.DMARC.WouldAlign;
    line(au, dmarcOk ? "good" : "bad", "DMARC: " + c.Auth.DMARC.Note +
      (c.Auth.DMARC.Policy ? " (policy: " + c.Auth.DMARC.Policy + ")" : ""));
    if (c.Auth.AuthenticationResults) line(au, "muted", "Authentication-Results: " + c.Auth.AuthenticationResults);
    box.appendChild(au);
    const h = section("HTML compatibility (" + c.HTML.Warnings.length + " warnings)");
    if (!c.HTML.Warnings.length) line(h, "good", c.HTML.Total.HTMLSize ? "No known problems found." : "No HTML part.");
    for (const w of c.HTML.Warnings) line(h, "sev-" + w.Severity, w.Title + " (" + w.Score.Found + "): " + w.Description);
    box.appendChild(h);
    const l = section("Links (" + c.Links.Links.length + ")");
    for (const k of c.Links.Links) line(l, k.Problem ? "sev-warning" : "", k.URL + (k.Problem ? "  — " + k.Problem : ""));
    box.appendChild(l);
  }
  function closeView() {
    state.current = null;
    $("view").hidden = true;
    document.querySelector(".layout").classList.remove("viewing");
  }

  /* ---- actions ---- */
  function setRead(ids, read) {
    return api("PUT", "/api/v1/messages", ids ? { IDs: ids, Read: read } : { Read: read }).then(loadList);
  }
  function del(ids) {
    return api("DELETE", "/api/v1/messages", ids ? { IDs: ids } : undefined).then(() => {
      if (state.current && (!ids || ids.indexOf(state.current.ID) >= 0)) closeView();
      for (const id of ids || []) state.selected.delete(id);
      if (!ids) state.selected.clear();
      return loadList();
    });
  }
  function wire() {
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.query = $("search").value.trim();
      state.start = 0;
      loadList();
    });
    $("home").addEventListener("click", (e) => {
      e.preventDefault();
      $("search").value = ""; state.query = ""; state.start = 0; closeView(); loadList();
    });
    $("select-all").addEventListener("change", (e) => {
      for (const m of state.messages) {
        if (e.target.checked) state.selected.add(m.ID); else state.selected.delete(m.ID);
      }
      renderList({ messages: state.messages, messages_count: state.total, total: state.total, unread: Number($("unread").textContent) });
      loadList();
    });
    $("btn-read").addEventListener("click", () => { const s = selectedIds(); if (s.length) setRead(s, true); });
    $("btn-unread").addEventListener("click", () => { const s = selectedIds(); if (s.length) setRead(s, false); });
    $("btn-delete").addEventListener("click", () => { const s = selectedIds(); if (s.length) del(s); });
    $("btn-delete-all").addEventListener("click", () => { if (confirm("Delete all messages?")) del(null); });
    $("prev").addEventListener("click", () => { state.start = Math.max(0, state.start - PAGE); loadList(); });
    $("next").addEventListener("click", () => { state.start += PAGE; loadList(); });
    $("back").addEventListener("click", closeView);
    $("v-unread").addEventListener("click", () => { if (state.current) setRead([state.current.ID], false); });
    $("v-delete").addEventListener("click", () => { if (state.current) del([state.current.ID]); });
    $("allow-remote").addEventListener("click", () => { state.remote = true; showTab("html"); });
    $("v-release").addEventListener("click", () => {
      const to = $("release-to").value.split(/[ ,;]+/).filter(Boolean);
      if (!state.current || !to.length) return;
      $("v-status").textContent = "releasing…";
      api("POST", "/api/v1/message/" + encodeURIComponent(state.current.ID) + "/release", { To: to })
        .then(() => { $("v-status").textContent = "released to " + to.join(", "); })
        .catch((e) => { $("v-status").textContent = e.message; });
    });
    for (const b of document.querySelectorAll(".tabs button"))
      b.addEventListener("click", () => showTab(b.dataset.tab));
  }

  /* ---- live updates (server-sent events) ---- */
  let pending = null;
  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; loadList(); }, 150);
  }
  function live() {
    /* ?live=0 turns live updates off (headless browsers wait for open streams) */
    if (!window.EventSource || /[?&]live=0/.test(location.search)) return;
    const es = new EventSource("/api/v1/events");
    es.addEventListener("open", () => $("live").classList.add("on"));
    es.addEventListener("error", () => $("live").classList.remove("on"));
    for (const ev of ["new", "delete", "update"]) es.addEventListener(ev, refreshSoon);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    api("GET", "/api/v1/webui").then((w) => { state.relay = !!(w.MessageRelay && w.MessageRelay.Enabled); }).catch(() => {});
    loadList().then(() => {
      /* #ID opens a message (links from logs, tests) */
      if (location.hash.length > 1) openMessage(decodeURIComponent(location.hash.slice(1)));
    });
    live();
  });
})();
