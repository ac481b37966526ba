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

  window.Console = { post, el, csrf };
})();
