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

  function queueRow(h, claimable, offer) {
    const tr = el("tr"); tr.dataset.handoffId = h.id;
    tr.setAttribute("data-testid", "handoff-row");
    const ref = el("td"); ref.style.whiteSpace = "nowrap"; const a = el("a", null, h.reference); a.href = "/console/inbox/" + h.id; ref.append(a);
    if (h.requested_for_me) { ref.append(" ", el("span", "badge ok", "for you")); }
    if (h.offered_to_name && !h.offered_to_me) {
      const b = el("span", "badge", "offered to " + h.offered_to_name); b.setAttribute("data-testid", "offered-to");
      ref.append(el("br"), b);
    }
    if (offer && h.offer_expires_at) { ref.append(el("br"), el("span", "muted", "until " + when(h.offer_expires_at))); }
    const who = el("td", null, h.hcp_name || "Not identified");
    if (h.hcp_specialty) { who.append(el("br"), el("span", "muted", h.hcp_specialty)); }
    const sla = el("td"); const badge = el("span", "badge " + h.sla, SLA_WORDS[h.sla] || h.sla);
    badge.setAttribute("data-testid", "sla-badge");
    sla.append(badge, el("br"), el("span", "muted", when(h.sla_due_at)));
    if (h.contact_preference) { sla.append(el("br"), el("span", "badge", "prefers " + h.contact_preference)); }
    const act = el("td");
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
    tr.append(ref, el("td", null, h.target.replace(/_/g, " ")), who,
      el("td", null, h.channel === "whatsapp" ? "WhatsApp" : "web chat"), el("td", "summary", h.summary), sla, act);
    return tr;
  }

  function fillTable(id, items, claimable, emptyText, offer) {
    const table = document.getElementById(id);
    const body = table.querySelector("tbody");
    body.replaceChildren(...items.map((h) => queueRow(h, claimable, offer)));
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

  function queuePage() {
    async function refresh() {
      try {
        const q = await getJson("/api/staff/inbox");
        fillTable("mine", q.mine, false, "You hold no conversations.");
        fillTable("queued", q.queued, true, "Nobody is waiting.");
        fillTable("offered", q.offered || [], true, "", true);
        showAssignment(q.assignment);
      } catch (_) { /* keep the last view; the next refresh tries again */ }
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
    document.getElementById("reply-form").addEventListener("submit", (e) => { e.preventDefault(); sendReply(); });
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
