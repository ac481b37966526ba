// Shared console helpers. Message text is always set with textContent, never as HTML.
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function post(url, data) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf(), accept: "application/json" },
      body: JSON.stringify(data || {}),
      credentials: "same-origin",
    });
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    if (!res.ok) {
      const msg = body && body.error ? body.error.message : ("request failed (" + res.status + ")");
      const err = new Error(msg); err.status = res.status; err.body = body; throw err;
    }
    return body;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  // Phones: every data table stacks into one card per row (console.css, table.stack); each cell carries
  // its column's header as data-label. Rows drawn later by a page's script are labelled as they arrive.
  function labelTable(table) {
    const heads = Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim());
    if (!heads.length) return;
    table.classList.add("stack");
    table.querySelectorAll("tbody tr").forEach((tr) => {
      Array.from(tr.children).forEach((cell, i) => {
        if (heads[i] && !cell.hasAttribute("data-label") && !cell.hasAttribute("colspan")) cell.setAttribute("data-label", heads[i]);
      });
    });
  }
  function labelTables(root) { (root || document).querySelectorAll("table").forEach(labelTable); }
  labelTables(document);
  new MutationObserver((changes) => {
    const tables = new Set();
    changes.forEach((c) => { const t = c.target.closest && c.target.closest("table"); if (t) tables.add(t); });
    tables.forEach(labelTable);
  }).observe(document.body, { childList: true, subtree: true });

  // Destructive actions ask first: a form or button with data-confirm="…" proceeds only when the
  // staff member says OK. Capture phase, so a page's own handlers never see a cancelled click.
  function confirmed(node) {
    const text = node && node.getAttribute && node.getAttribute("data-confirm");
    return !text || window.confirm(text);
  }
  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    if (!confirmed(event.target) || (button && !confirmed(button))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button[data-confirm]");
    if (button && button.type !== "submit" && !confirmed(button)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // ------------------------------------------------------------------ inbox attention, on every console page
  // For staff who work an inbox: the nav badge and the page title carry the number of handoffs
  // waiting; a new one is announced to screen readers (the polite live region in base.html) and,
  // when the staff member turned it on (the checkbox on the inbox page, kept in localStorage),
  // with a short beep (Web Audio, no file) and a browser notification.
  const ALERTS_KEY = "concierge.inbox.alerts";
  const SEEN_KEY = "concierge.inbox.seen";
  const ATTENTION_EVERY_MS = 5000;
  const alerts = {
    enabled() { try { return window.localStorage.getItem(ALERTS_KEY) === "on"; } catch (_) { return false; } },
    set(on) {
      try { window.localStorage.setItem(ALERTS_KEY, on ? "on" : "off"); } catch (_) { /* private mode: stays off */ }
      if (on && "Notification" in window && Notification.permission === "default") {
        const asked = Notification.requestPermission();  // a promise (older Safari: a callback API)
        if (asked && asked.catch) asked.catch(() => null);
      }
    },
  };
  let played = 0;
  function beep() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      const ctx = new Ctx();
      const tone = ctx.createOscillator(); const gain = ctx.createGain();
      tone.type = "sine"; tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.15, ctx.currentTime + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.35);
      tone.connect(gain); gain.connect(ctx.destination);
      if (ctx.state === "suspended") ctx.resume().catch(() => null);
      tone.start(); tone.stop(ctx.currentTime + 0.4);
      tone.onended = () => ctx.close();
      played += 1; document.body.dataset.alertsPlayed = String(played);
    } catch (_) { /* no sound is not an error */ }
  }
  function notify(text) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && document.hasFocus()) return;  // the page says it already
    try {
      const n = new Notification("HCP Concierge inbox", { body: text, tag: "concierge-inbox" });
      n.onclick = () => { window.focus(); window.location.assign("/console/inbox"); };
    } catch (_) { /* some browsers allow notifications only from a service worker */ }
  }
  function announce(text) {
    const region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(() => { region.textContent = text; }, 50);  // a changed text is read out again
  }
  function watchInbox(link) {
    const badge = link.querySelector(".nav-badge");
    const baseTitle = document.title;
    let seen = null;
    try { const raw = window.sessionStorage.getItem(SEEN_KEY); if (raw) seen = new Set(JSON.parse(raw)); } catch (_) { seen = null; }
    async function check() {
      let a;
      try {
        const res = await fetch("/api/staff/attention", { headers: { accept: "application/json" }, credentials: "same-origin" });
        if (!res.ok) return;
        a = await res.json();
      } catch (_) { return; }
      const n = a.queued;
      if (badge) {
        badge.hidden = n === 0; badge.dataset.count = String(n);
        badge.replaceChildren(String(n), el("span", "visually-hidden", n === 1 ? " handoff waiting" : " handoffs waiting"));
      }
      document.title = n ? "(" + n + ") " + baseTitle : baseTitle;
      if (seen !== null) {
        const fresh = a.recent.filter((r) => !seen.has(r.id));
        if (fresh.length) {
          const text = fresh.length === 1
            ? "New handoff " + fresh[0].reference + " waiting for the " + fresh[0].target.replace(/_/g, " ") + " team."
            : fresh.length + " new handoffs waiting: " + fresh.map((r) => r.reference).join(", ") + ".";
          announce(text);
          if (alerts.enabled()) { beep(); notify(text); }
        }
      }
      seen = new Set(a.recent.map((r) => r.id));
      try { window.sessionStorage.setItem(SEEN_KEY, JSON.stringify([...seen])); } catch (_) { /* one tab only */ }
      document.dispatchEvent(new CustomEvent("console:attention", { detail: a }));
    }
    check();
    window.setInterval(check, ATTENTION_EVERY_MS);
  }
  const inboxLink = document.querySelector("a[data-inbox-link]");
  if (inboxLink) watchInbox(inboxLink);

  window.Console = { post, el, csrf, labelTables, alerts, announce };
})();
