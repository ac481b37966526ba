// Inbox console: the queue (refreshed) and one handoff (live transcript, actions, replies).
// Message text is only ever set with textContent.
(function () {
  "use strict";
  const { post, el, csrf } = window.Console;

  async function getJson(url) {
    const res = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const err = new Error(body && body.error ? body.error.message : "request failed (" + res.status + ")");
      err.status = res.status; throw err;
    }
    return body;
  }

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = (n) => String(n).padStart(2, "0");
  function when(iso) {  // as the server renders it: "23 Nov 2026 15:12 UTC"
    const d = new Date(iso);
    return pad(d.getUTCDate()) + " " + MONTHS[d.getUTCMonth()] + " " + d.getUTCFullYear() + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  // ------------------------------------------------------------------ the queue page
  const SLA_WORDS = { overdue: "overdue", "due-soon": "due soon", ok: "on time" };

  function waited(seconds) {  // as the server renders it (inbox.html, macro waited)
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return "under a minute";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
    return Math.floor(seconds / 86400) + " d " + Math.floor((seconds % 86400) / 3600) + " h";
  }

  // One row's cells, each with a key: a cell is redrawn only when its key changed, so the link or
  // Claim button a keyboard user is on stays the same element across refreshes.
  function rowCells(h, claimable, offer) {
    const ref = el("td", "nowrap"); const a = el("a", null, h.reference); a.href = "/console/inbox/" + h.id; ref.append(a);
    if (h.requested_for_me) { ref.append(" ", el("span", "badge ok", "for you")); }
    if (h.offered_to_name && !h.offered_to_me) {
      const b = el("span", "badge", "offered to " + h.offered_to_name); b.setAttribute("data-testid", "offered-to");
      ref.append(el("br"), b);
    }
    if (offer && h.offer_expires_at) { ref.append(el("br"), el("span", "muted", "until " + when(h.offer_expires_at))); }
    const who = el("td", null, h.hcp_name || "Not identified");
    if (h.hcp_specialty) { who.append(el("br"), el("span", "muted", h.hcp_specialty)); }
    if (h.opted_out) {
      const flag = el("span", "badge overdue", "opted out"); flag.setAttribute("data-testid", "opted-out");
      flag.title = "The HCP sent STOP: no messages go to them on this channel";
      who.append(el("br"), flag);
    }
    const preview = el("td", "preview" + (h.preview_withheld ? " withheld" : ""));
    preview.setAttribute("data-testid", "preview");
    if (h.preview) preview.append(el("span", "muted", h.preview_from + ":"), " " + h.preview);
    else preview.append(el("span", "muted", "—"));
    const wait = el("td", "nowrap", waited(h.waiting_seconds)); wait.setAttribute("data-testid", "waiting");
    const sla = el("td"); const badge = el("span", "badge " + h.sla, SLA_WORDS[h.sla] || h.sla);
    badge.setAttribute("data-testid", "sla-badge");
    sla.append(badge, el("br"), el("span", "muted", when(h.sla_due_at)));
    if (h.contact_preference) { sla.append(el("br"), el("span", "badge", "prefers " + h.contact_preference)); }
    const act = el("td", "nowrap");
    if (claimable) {
      const form = el("form"); form.method = "post"; form.action = "/console/inbox/" + h.id + "/claim";
      const token = el("input"); token.type = "hidden"; token.name = "csrf_token"; token.value = csrf();
      form.append(token);
      if (offer) {
        const accept = el("button", null, "Accept"); accept.type = "submit"; accept.setAttribute("data-testid", "accept");
        const decline = el("button", null, "Decline"); decline.type = "button";
        decline.setAttribute("data-testid", "decline"); decline.dataset.decline = h.id;
        form.append(accept, " ", decline);
      } else {
        const btn = el("button", null, "Claim"); btn.type = "submit"; btn.setAttribute("data-testid", "claim");
        form.append(btn);
      }
      act.append(form);
    } else {
      const open = el("a", null, "Open"); open.href = "/console/inbox/" + h.id; act.append(open);
    }
    return [
      [ref, [h.reference, h.requested_for_me, h.offered_to_name, h.offered_to_me, offer && h.offer_expires_at].join("|")],
      [el("td", "nowrap", h.target.replace(/_/g, " ")), h.target],
      [who, [h.hcp_name, h.hcp_specialty, h.opted_out].join("|")],
      [el("td", "nowrap", h.channel === "whatsapp" ? "WhatsApp" : "web chat"), h.channel],
      [el("td", "summary", h.summary), h.summary],
      [preview, [h.preview_from, h.preview, h.preview_withheld].join("|")],
      [wait, wait.textContent],
      [sla, [h.sla, h.sla_due_at, h.contact_preference].join("|")],
      [act, claimable ? (offer ? "offer" : "claim") : "open"],
    ];
  }

  function setRowData(tr, h) {
    tr.dataset.handoffId = h.id; tr.dataset.target = h.target; tr.dataset.status = h.status; tr.dataset.sla = h.sla;
    tr.dataset.optedOut = h.opted_out ? "yes" : "no";
    tr.dataset.search = [h.reference, h.hcp_name, h.hcp_specialty, h.summary, h.preview, h.target.replace(/_/g, " ")]
      .filter(Boolean).join(" ").toLowerCase();
  }

  function updateRow(tr, h, claimable, offer) {
    setRowData(tr, h);
    const cells = rowCells(h, claimable, offer);
    const drawnByServer = tr.dataset.keys === undefined && tr.children.length > 0;
    const keys = JSON.parse(tr.dataset.keys || "[]");
    const text = (node) => node.textContent.replace(/\s+/g, " ").trim();
    cells.forEach(([cell, key], i) => {
      const old = tr.children[i];
      // unchanged: keep the element (and any focus inside it); a row the server drew is compared by its text
      if (old && (drawnByServer ? text(old) === text(cell) : keys[i] === String(key))) return;
      if (old) {
        // Carry the phone layout's column label over; the table's observer labels new cells too.
        if (old.hasAttribute("data-label")) cell.setAttribute("data-label", old.getAttribute("data-label"));
        old.replaceWith(cell);
      } else {
        tr.append(cell);
      }
    });
    tr.dataset.keys = JSON.stringify(cells.map(([, key]) => String(key)));
  }

  // Rows are matched by handoff id: kept rows are updated in place, new ones inserted where the
  // server's order puts them, gone ones removed. Focus survives; if the focused row is gone, focus
  // moves to the table's heading rather than being lost to the page.
  function fillTable(id, items, claimable, emptyText, offer) {
    const table = document.getElementById(id);
    const body = table.querySelector("tbody");
    const active = document.activeElement;
    const existing = new Map([...body.querySelectorAll("tr[data-handoff-id]")].map((tr) => [tr.dataset.handoffId, tr]));
    const wanted = new Set(items.map((h) => h.id));
    let lostFocus = false;
    for (const [hid, tr] of existing) {
      if (!wanted.has(hid)) { if (tr.contains(active)) lostFocus = true; tr.remove(); existing.delete(hid); }
    }
    let cursor = body.firstElementChild;
    for (const h of items) {
      let tr = existing.get(h.id);
      if (!tr) {
        tr = el("tr"); tr.setAttribute("data-testid", "handoff-row");
      }
      updateRow(tr, h, claimable, offer);
      if (tr !== cursor) body.insertBefore(tr, cursor);  // moves a kept row only when the order changed
      else cursor = cursor.nextElementSibling;
    }
    if (active && active !== document.activeElement && active.isConnected) active.focus({ preventScroll: true });
    if (lostFocus) {
      const heading = table.closest("section").querySelector("h2");
      heading.tabIndex = -1; heading.focus({ preventScroll: true });
    }
    if (offer) { document.getElementById("offered-card").hidden = !items.length; return; }
    let empty = document.getElementById(id + "-empty");
    if (!items.length && !empty) {
      empty = el("p", "muted", emptyText); empty.id = id + "-empty"; table.after(empty);
    } else if (items.length && empty) {
      empty.remove();
    }
  }

  function showAssignment(a) {
    if (!a) return;
    document.getElementById("presence").value = a.presence;
    document.getElementById("load").textContent = a.load + " of " + a.capacity + " open";
  }

  function assignError(text) {
    const box = document.getElementById("assign-error");
    box.textContent = text || ""; box.hidden = !text;
  }

  // Search and filters work on the rows in the page (they survive refreshes).
  function applyFilters() {
    const q = document.getElementById("queue-q").value.trim().toLowerCase();
    const target = document.getElementById("queue-target").value;
    const status = document.getElementById("queue-status").value;
    let shown = 0; let total = 0;
    for (const tr of document.querySelectorAll("#mine tbody tr[data-handoff-id], #queued tbody tr[data-handoff-id]")) {
      total += 1;
      const ok = (!q || (tr.dataset.search || "").includes(q)) && (!target || tr.dataset.target === target) &&
        (!status || (status === "overdue" ? tr.dataset.sla === "overdue"
          : status === "opted-out" ? tr.dataset.optedOut === "yes" : tr.dataset.status === status));
      tr.hidden = !ok;
      if (ok) shown += 1;
    }
    const line = document.getElementById("queue-shown");
    const text = (q || target || status) ? "Showing " + shown + " of " + total + "." : "";
    if (line.textContent !== text) line.textContent = text;
  }

  function queuePage() {
    // Rows drawn by the server carry no search text yet: read it from the first refresh; until
    // then, the visible text of the row.
    for (const tr of document.querySelectorAll("tr[data-handoff-id]")) {
      tr.dataset.search = tr.textContent.replace(/\s+/g, " ").trim().toLowerCase();
    }
    let busy = false;
    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        const q = await getJson("/api/staff/inbox");
        fillTable("mine", q.mine, false, "You hold no conversations.");
        fillTable("queued", q.queued, true, "Nobody is waiting.");
        fillTable("offered", q.offered || [], true, "", true);
        showAssignment(q.assignment);
        applyFilters();
      } catch (_) { /* keep the last view; the next refresh tries again */ }
      busy = false;
    }
    const presence = document.getElementById("presence");
    if (presence) {
      presence.addEventListener("change", async () => {
        assignError("");
        try {
          showAssignment(await post("/api/staff/presence", { presence: presence.value }));
          await refresh();
        } catch (err) { assignError("Your status did not change: " + err.message); await refresh(); }
      });
    }
    // Claim and Accept through the JSON route, so a refusal (at capacity, claimed by a colleague)
    // is shown here and nothing is lost; without the script the forms still post.
    document.addEventListener("submit", async (ev) => {
      const form = ev.target;
      if (!(form instanceof HTMLFormElement) || !/\/claim$/.test(form.action)) return;
      ev.preventDefault();
      assignError("");
      const id = form.action.split("/").slice(-2)[0];
      try {
        await post("/api/staff/inbox/" + id + "/claim");
        window.location.href = "/console/inbox/" + id;
      } catch (err) { assignError(err.message); await refresh(); }
    });
    document.addEventListener("click", async (ev) => {
      const btn = ev.target.closest && ev.target.closest("[data-decline]");
      if (!btn) return;
      assignError("");
      try { await post("/api/staff/inbox/" + btn.dataset.decline + "/decline"); }
      catch (err) { assignError(err.message); }
      await refresh();
    });
    const form = document.getElementById("queue-filters");
    form.addEventListener("submit", (e) => e.preventDefault());
    form.addEventListener("input", applyFilters);
    form.addEventListener("change", applyFilters);
    const alertsBox = document.getElementById("queue-alerts");
    alertsBox.checked = window.Console.alerts.enabled();
    alertsBox.addEventListener("change", () => window.Console.alerts.set(alertsBox.checked));
    // A new handoff seen by the nav badge's poll refreshes the queue at once.
    let lastCount = null;
    document.addEventListener("console:attention", (e) => {
      const key = e.detail.queued + "/" + e.detail.mine + "/" + e.detail.recent.map((r) => r.id).join(",");
      if (lastCount !== null && key !== lastCount) refresh();
      lastCount = key;
    });
    applyFilters();
    refresh();
    setInterval(refresh, 5000);
  }

  // ------------------------------------------------------------------ one handoff
  function handoffPage(root) {
    const id = root.dataset.handoffId;
    const conversationId = root.dataset.conversationId;
    const me = root.dataset.me;
    const withheldText = root.dataset.withheldText;
    const transcript = document.getElementById("transcript");
    const errorBox = document.getElementById("error");
    const seen = new Set([...transcript.querySelectorAll("[data-message-id]")].map((n) => Number(n.dataset.messageId)));
    let lastId = Number(root.dataset.lastId || 0);
    let status = root.dataset.status;
    let claimedBy = root.dataset.claimedBy;

    function showError(message) {
      errorBox.textContent = message; errorBox.hidden = !message;
    }

    function addMessage(m) {
      if (seen.has(m.id)) return;
      seen.add(m.id);
      lastId = Math.max(lastId, m.id);
      let cls = "msg " + (m.direction === "in" ? "in" : "out");
      if (m.sender_type === "staff") cls += " staff";
      if (m.withheld) cls += " withheld";
      const div = el("div", cls, m.withheld ? withheldText : m.body);
      div.dataset.messageId = String(m.id);
      div.setAttribute("data-testid", m.withheld ? "message-withheld" : "message-" + m.sender_type);
      let meta = m.sender_type + " · " + when(m.created_at);
      if (m.approval_code) meta += " · approved " + m.approval_code;
      div.append(el("span", "meta", meta));
      transcript.append(div);
      transcript.scrollTop = transcript.scrollHeight;
    }

    function applyState(s) {
      if (s.handoff_status) {
        status = s.handoff_status; claimedBy = s.claimed_by || "";
      } else if (s.state === "queued") {
        status = "queued"; claimedBy = "";
      } else if (s.state === "human" && s.assigned_staff_id) {
        status = "claimed"; claimedBy = s.assigned_staff_id;
      } else if ((s.state === "bot" || s.state === "closed") && status === "claimed") {
        status = s.state === "closed" ? "closed" : "handed_back";
      }
      const mine = status === "claimed" && claimedBy === me;
      document.getElementById("status-text").textContent =
        status.replace(/_/g, " ") + (status === "claimed" ? (mine ? " (by you)" : " (by a colleague)") : "");
      document.querySelector('[data-action="claim"]').disabled = status !== "queued";
      document.querySelector('[data-action="release"]').disabled = !mine;
      document.querySelector('[data-action="hand-back"]').disabled = !mine;
      for (const form of ["reply-form", "close-form"]) {
        for (const c of document.getElementById(form).elements) c.disabled = !mine;
      }
      const transferable = mine || status === "queued";
      for (const c of document.getElementById("transfer-form").elements) c.disabled = !transferable;
      for (const b of document.querySelectorAll("#content-results button, #screen-suggestions button")) b.disabled = !mine || b.dataset.gated === "1";
      for (const c of document.querySelectorAll("#screen-override input, #screen-override button")) c.disabled = !mine;
    }

    // Live: the relay's server-sent events when the server has them; polling otherwise (and as the fallback).
    let pollTimer = null;
    async function poll() {
      try {
        const r = await getJson("/api/staff/inbox/" + id + "/messages?after=" + lastId);
        r.messages.forEach(addMessage);
        applyState(r.state);
      } catch (err) {
        if (err.status === 401) { showError("Your session has ended; log in again."); return; }
      }
      pollTimer = setTimeout(poll, 1500);
    }
    function startPolling() { if (pollTimer === null) poll(); }

    if (root.dataset.relay === "on" && window.EventSource) {
      const url = "/api/staff/conversations/" + conversationId + "/events?after=" + lastId;
      const source = new EventSource(url);
      source.addEventListener("message", (e) => addMessage(JSON.parse(e.data)));
      source.addEventListener("state", (e) => applyState(JSON.parse(e.data)));
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) startPolling();
      };
    } else {
      startPolling();
    }

    async function act(path, data) {
      showError("");
      try {
        const h = await post("/api/staff/inbox/" + id + "/" + path, data);
        applyState({ handoff_status: h.status, claimed_by: h.claimed_by });
        if (path !== "transfer") window.location.reload();  // the status line and badges follow the new state
        return h;
      } catch (err) {
        showError(err.message);
        return null;
      }
    }

    for (const btn of document.querySelectorAll("#actions [data-action]")) {
      btn.addEventListener("click", () => act(btn.dataset.action, {}));
    }
    document.getElementById("close-form").addEventListener("submit", (e) => {
      e.preventDefault();
      act("close", { outcome: e.target.elements.outcome.value });
    });
    document.getElementById("transfer-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const h = await act("transfer", { to_target: f.to_target.value || null, to_staff_id: f.to_staff_id.value || null,
        note: f.note.value || null });
      if (h && h.claimed_by !== me) window.location.assign("/console/inbox");
    });
    function contentItem(item, onSent) {
      const li = el("li"); li.setAttribute("data-testid", "content-item");
      li.append(el("strong", null, item.title), " ", el("span", "muted", item.content_id + " v" + item.version +
        " · " + item.approval_code));
      li.append(el("p", "muted", item.excerpt));
      const btn = el("button", "secondary", "Send verbatim"); btn.type = "button";
      btn.setAttribute("data-testid", "send-content");
      if (!item.sendable) {
        btn.dataset.gated = "1"; btn.disabled = true;
        li.append(el("p", "flash error", "Cannot go to this HCP: " + item.reason));
      }
      btn.addEventListener("click", async () => {
        showError("");
        try {
          const sent = await post("/api/staff/inbox/" + id + "/content",
            { content_id: item.content_id, version: item.version });
          addMessage(sent.message);
          if (onSent) onSent();
        } catch (err) {
          showError((err.body && err.body.error && err.body.error.code === "content_gated")
            ? "Not sent — this item may not go to this HCP now: " + err.message : err.message);
        }
      });
      li.append(btn);
      return li;
    }

    // The reply screen: a refused reply stays in the box; the reasons, the approved content that
    // fits and (when allowed) an override with a reason are shown under it.
    const box = document.getElementById("reply-text");
    const maxChars = Number(box.dataset.max || 4000);
    const counter = document.getElementById("reply-count");
    const screenBox = document.getElementById("screen-result");
    const notice = document.getElementById("screen-notice");
    function countChars() {
      const n = box.value.trim().length;
      counter.textContent = n > maxChars ? n + " / " + maxChars + " characters: too long, shorten it before sending"
        : (n ? n + " / " + maxChars + " characters" : "");
      counter.className = n > maxChars ? "flash error" : "muted";
    }
    box.addEventListener("input", countChars);
    function clearScreen() { screenBox.hidden = true; notice.hidden = true; }
    function showScreen(detail) {
      const list = document.getElementById("screen-findings");
      list.replaceChildren();
      for (const f of detail.findings || []) {
        const li = el("li"); li.setAttribute("data-testid", "screen-finding"); li.dataset.kind = f.kind;
        li.append(el("span", "finding-kind", f.label + ": "), f.detail);
        if (f.excerpt) li.append(" — ", el("span", "excerpt", "“" + f.excerpt + "”"));
        list.append(li);
      }
      document.getElementById("screen-override").hidden = !detail.overridable;
      const no = document.getElementById("screen-no-override");
      no.hidden = detail.overridable;
      no.textContent = detail.overridable ? "" : "This cannot be sent with an override" +
        (detail.commercial ? ": reps cannot override an off-label block." : ".") +
        " Rephrase it, send approved content, or transfer the question to Medical Information.";
      const sugg = document.getElementById("screen-suggestions");
      sugg.replaceChildren();
      if (!(detail.suggestions || []).length) sugg.append(el("li", "muted", "No approved item about this product can go to this HCP now; search below."));
      for (const item of detail.suggestions || []) sugg.append(contentItem(item, clearScreen));
      screenBox.hidden = false;
      applyState({});
    }
    async function sendReply(overrideReason) {
      showError("");
      notice.hidden = true;
      const data = { text: box.value };
      if (overrideReason !== undefined) data.override_reason = overrideReason;
      try {
        const r = await post("/api/staff/inbox/" + id + "/reply", data);
        addMessage(r.message);
        box.value = ""; countChars(); clearScreen();
        document.getElementById("override-reason").value = "";
        const notes = [];
        if (r.adverse_event_reference) notes.push("The adverse event you mentioned was reported to Patient Safety as " + r.adverse_event_reference + ".");
        if (r.overridden && r.overridden.length) notes.push("Sent with your recorded reason.");
        if (notes.length) { notice.textContent = notes.join(" "); notice.hidden = false; }
      } catch (err) {
        const error = err.body && err.body.error;
        if (error && error.code === "reply_blocked" && error.detail) {
          showScreen(error.detail);
          let msg = err.message;
          if (error.detail.adverse_event_reference) msg += " The adverse event you mentioned was reported to Patient Safety as " + error.detail.adverse_event_reference + ".";
          showError(msg);
        } else {
          showError(err.message + " Your text is still in the box.");
        }
      }
    }
    const replyForm = document.getElementById("reply-form");
    replyForm.addEventListener("submit", (e) => { e.preventDefault(); sendReply(); });
    // Ctrl+Enter (Cmd+Enter on a Mac) sends; Enter alone keeps making new lines.
    box.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey) || e.isComposing) return;
      e.preventDefault();
      if (!box.disabled && box.value.trim()) replyForm.requestSubmit();
    });
    document.getElementById("override-send").addEventListener("click", () => {
      const reason = document.getElementById("override-reason").value.trim();
      if (!reason) { showError("Give a reason for sending it anyway."); return; }
      sendReply(reason);
    });

    const results = document.getElementById("content-results");
    document.getElementById("content-search").addEventListener("submit", async (e) => {
      e.preventDefault();
      showError("");
      try {
        const q = encodeURIComponent(document.getElementById("content-q").value);
        const r = await getJson("/api/staff/inbox/" + id + "/content?q=" + q);
        results.replaceChildren();
        if (!r.items.length) results.append(el("li", "muted", "No approved item matches."));
        for (const item of r.items) results.append(contentItem(item));
        applyState({});
      } catch (err) { showError(err.message); }
    });

    applyState({});
    transcript.scrollTop = transcript.scrollHeight;
  }

  const root = document.getElementById("handoff");
  if (root) handoffPage(root);
  else if (document.getElementById("queued")) queuePage();
})();
