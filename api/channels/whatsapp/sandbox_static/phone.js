/*
 * WhatsApp sandbox: a simulated phone talking to the fake Twilio.
 *
 * Every message text is written with textContent (never innerHTML): bodies come from the
 * api and from whoever types here, and are shown exactly as sent. Line breaks are kept by CSS.
 * Numbered options ("Reply 1 for …") are shown in the text, as WhatsApp shows them, and also
 * as tap targets that send the number — what an HCP would type.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "hcpConcierge.sandbox.number";
  var POLL_MS = 700;
  var OPTION = /^Reply (\d{1,2}) for (.+)$/;

  var els = {};
  var state = { number: "", cursor: 0, bubbles: new Map(), pollTimer: null, sending: false };

  function randomNumber() {
    var digits = "";
    for (var i = 0; i < 7; i++) digits += Math.floor(Math.random() * 10);
    return "whatsapp:+1555" + digits;
  }

  function loadNumber() {
    try {
      return window.localStorage.getItem(STORAGE_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function saveNumber(n) {
    try {
      window.localStorage.setItem(STORAGE_KEY, n);
    } catch (e) {
      /* storage disabled: a reload starts a new conversation */
    }
  }

  function api(method, url, body) {
    var init = { method: method, headers: { Accept: "application/json" }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (resp) {
      return resp.json().then(
        function (data) {
          if (!resp.ok) {
            var msg = data && data.error ? data.error.message : "request failed (" + resp.status + ")";
            throw new Error(msg);
          }
          return data;
        },
        function () {
          throw new Error("the sandbox answered " + resp.status);
        }
      );
    });
  }

  function showError(text) {
    els.error.textContent = text || "";
    els.error.hidden = !text;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function timeOf(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function statusText(ev) {
    if (ev.direction === "business") return "";
    if (ev.status === "sending") return "sending…";
    if (ev.status === "accepted") return "✓ webhook 200 · " + ev.ack_ms + " ms";
    return "✗ refused " + (ev.detail || "");
  }

  function optionsOf(body) {
    var out = [];
    body.split("\n").forEach(function (line) {
      var m = OPTION.exec(line.trim());
      if (m) out.push({ n: m[1], title: m[2] });
    });
    return out;
  }

  function render(ev) {
    var bubble = state.bubbles.get(ev.id);
    var isNew = !bubble;
    if (isNew) {
      bubble = el("div", "bubble " + (ev.direction === "phone" ? "from-phone" : "from-business"));
      bubble.setAttribute("data-testid", ev.direction === "phone" ? "bubble-phone" : "bubble-business");
      bubble.appendChild(el("div", "text", ev.body)).setAttribute("data-testid", "bubble-text");
      var meta = el("div", "meta");
      meta.appendChild(el("span", "time", timeOf(ev.at)));
      var st = el("span", "status");
      st.setAttribute("data-testid", "bubble-status");
      meta.appendChild(st);
      bubble.appendChild(meta);
      if (ev.direction === "business") {
        var opts = optionsOf(ev.body);
        if (opts.length) {
          var group = el("div", "options");
          group.setAttribute("role", "group");
          group.setAttribute("aria-label", "Numbered options");
          opts.forEach(function (o) {
            var b = el("button", "option", o.n + " · " + o.title);
            b.type = "button";
            b.setAttribute("data-testid", "option");
            b.setAttribute("aria-label", "Reply " + o.n + " (" + o.title + ")");
            b.addEventListener("click", function () {
              send({ body: o.n, kind: "text" });
            });
            group.appendChild(b);
          });
          bubble.appendChild(group);
        }
      }
      state.bubbles.set(ev.id, bubble);
      els.messages.appendChild(bubble);
    }
    bubble.querySelector(".status").textContent = statusText(ev);
    bubble.classList.toggle("refused", ev.status === "rejected");
    if (isNew) els.messages.scrollTop = els.messages.scrollHeight;
  }

  function poll() {
    var number = state.number;
    api("GET", "/sandbox/api/messages?number=" + encodeURIComponent(number) + "&after=" + state.cursor)
      .then(function (data) {
        if (number !== state.number) return;
        var lastBusiness = 0;
        data.events.forEach(function (ev) {
          render(ev);
          if (ev.status !== "sending") state.cursor = Math.max(state.cursor, ev.id);
          if (ev.direction === "business") lastBusiness = Math.max(lastBusiness, ev.id);
        });
        if (lastBusiness) return api("POST", "/sandbox/api/read", { number: number, up_to: lastBusiness });
      })
      .catch(function (err) {
        showError("Cannot reach the sandbox: " + err.message);
      })
      .then(function () {
        state.pollTimer = window.setTimeout(poll, POLL_MS);
      });
  }

  function send(msg) {
    if (state.sending) return;
    state.sending = true;
    showError("");
    var payload = { from: state.number, body: msg.body, kind: msg.kind, forge: els.forge.checked };
    api("POST", "/sandbox/api/messages", payload)
      .then(function (ev) {
        render(ev);
        if (els.forge.checked) els.forge.checked = false;
        if (msg.kind === "text" && msg.fromInput) els.input.value = "";
      })
      .catch(function (err) {
        showError(err.message);
      })
      .then(function () {
        state.sending = false;
        els.input.focus();
      });
  }

  function useNumber(n) {
    state.number = n;
    state.cursor = 0;
    state.bubbles.clear();
    els.messages.textContent = "";
    els.number.value = n;
    saveNumber(n);
  }

  function init() {
    els.messages = document.getElementById("messages");
    els.error = document.getElementById("phone-error");
    els.input = document.getElementById("phone-input");
    els.number = document.getElementById("number");
    els.forge = document.getElementById("forge");

    useNumber(loadNumber() || randomNumber());
    els.number.addEventListener("change", function () {
      var n = els.number.value.trim();
      if (/^whatsapp:\+[1-9]\d{6,14}$/.test(n)) {
        showError("");
        useNumber(n);
      } else {
        showError("A WhatsApp number looks like whatsapp:+15551234567");
        els.number.value = state.number;
      }
    });
    els.number.addEventListener("keydown", function (e) {
      if (e.key === "Enter") {
        e.preventDefault();
        els.number.blur(); // commits the number (the change handler above)
        els.input.focus();
      }
    });
    document.getElementById("new-number").addEventListener("click", function () {
      useNumber(randomNumber());
    });
    document.getElementById("composer").addEventListener("submit", function (e) {
      e.preventDefault();
      var body = els.input.value;
      if (!body.trim()) return;
      send({ body: body, kind: "text", fromInput: true });
    });
    els.input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        document.getElementById("composer").requestSubmit();
      }
    });
    document.getElementById("send-location").addEventListener("click", function () {
      send({ body: "", kind: "location" });
    });
    document.getElementById("send-photo").addEventListener("click", function () {
      send({ body: "", kind: "photo" });
    });
    api("GET", "/sandbox/api/config")
      .then(function (cfg) {
        document.getElementById("webhook").textContent = cfg.webhook;
        document.getElementById("signed-for").textContent = cfg.signed_for;
        document.getElementById("business-number").textContent = cfg.business_number;
      })
      .catch(function (err) {
        showError("Cannot reach the sandbox: " + err.message);
      });
    poll();
    els.input.focus();
    document.documentElement.setAttribute("data-sandbox-ready", "true");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
