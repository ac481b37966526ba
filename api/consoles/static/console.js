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

  window.Console = { post, el, csrf, labelTables };
})();
