// Agent assist on a handoff page: suggested approved replies (sent verbatim with one click, through
// the same route as "Send verbatim") and canned staff snippets (inserted into the reply box, never
// replacing what is already typed). Only for the colleague who holds the conversation.
// Text is only ever set with textContent.
(function () {
  "use strict";
  const { post, el } = window.Console;
  const root = document.getElementById("handoff");
  const card = document.getElementById("assist-card");
  if (!root || !card) return;
  const id = root.dataset.handoffId;
  const mine = root.dataset.status === "claimed" && root.dataset.claimedBy === root.dataset.me;
  const errorBox = document.getElementById("error");
  const list = document.getElementById("suggestions");
  const picker = document.getElementById("snippet-pick");
  const insertSnippet = document.getElementById("snippet-insert");
  const replyBox = document.getElementById("reply-text");

  function showError(message) { errorBox.textContent = message; errorBox.hidden = !message; }

  async function getJson(url) {
    const res = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(body && body.error ? body.error.message : "request failed (" + res.status + ")");
    return body;
  }

  function suggestionItem(item) {
    const li = el("li"); li.setAttribute("data-testid", "suggestion");
    li.dataset.contentId = item.content_id;
    li.append(el("strong", null, item.title), " ",
      el("span", "muted", item.approval_code + " · " + item.content_id + " v" + item.version));
    li.append(el("p", "muted", item.excerpt + (item.excerpt.length >= 240 ? "…" : "")));
    const btn = el("button", "secondary", "Insert"); btn.type = "button";
    btn.title = "Sends this approved item verbatim, with its approval code";
    btn.setAttribute("data-testid", "suggestion-insert");
    btn.addEventListener("click", async () => {
      showError(""); btn.disabled = true;
      try {
        await post("/api/staff/inbox/" + id + "/content", { content_id: item.content_id, version: item.version });
        btn.textContent = "Sent";
      } catch (err) {
        btn.disabled = false;
        showError((err.body && err.body.error && err.body.error.code === "content_gated")
          ? "Not sent — this item may not go to this HCP now: " + err.message : err.message);
      }
    });
    li.append(btn);
    return li;
  }

  async function loadSuggestions() {
    list.replaceChildren(el("li", "muted", "Looking for approved items…"));
    try {
      const r = await getJson("/api/staff/inbox/" + id + "/suggestions");
      list.replaceChildren(...r.items.map(suggestionItem));
      if (!r.items.length) list.append(el("li", "muted", "No approved item fits the HCP's recent messages."));
    } catch (err) {
      list.replaceChildren(el("li", "muted", "Suggestions are unavailable: " + err.message));
    }
  }

  async function loadSnippets() {
    try {
      const r = await getJson("/api/staff/inbox/" + id + "/snippets");
      picker.replaceChildren(el("option", null, "—"));
      picker.firstChild.value = "";
      for (const s of r.items) {
        const o = el("option", null, s.title + " (" + s.code + " v" + s.version + ")"); o.value = s.id;
        picker.append(o);
      }
    } catch (err) { showError(err.message); }
  }

  insertSnippet.addEventListener("click", async () => {
    showError("");
    if (!picker.value) { showError("Choose a snippet to insert."); return; }
    try {
      const s = await post("/api/staff/inbox/" + id + "/snippets/" + encodeURIComponent(picker.value) + "/insert", {});
      const typed = replyBox.value;
      const joined = typed.trim() ? typed.replace(/\s+$/, "") + "\n\n" + s.body : s.body;
      if (joined.length > Number(replyBox.getAttribute("maxlength") || 4000)) {
        showError("The snippet does not fit: the reply would be longer than the limit. Nothing was changed.");
        return;
      }
      replyBox.value = joined;
      replyBox.focus();
    } catch (err) {
      showError("Snippet not inserted: " + err.message);
      loadSnippets();
    }
  });
  document.getElementById("suggestions-refresh").addEventListener("click", loadSuggestions);

  if (!mine) {
    card.querySelector("[data-assist-body]").hidden = true;
    card.append(el("p", "muted", "Claim the conversation to see suggested replies and snippets."));
    return;
  }
  loadSuggestions();
  loadSnippets();
})();
