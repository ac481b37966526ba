/*
 * HCP Concierge web chat.
 *
 * Message bodies are approved content and are shown verbatim: they are only ever
 * written with textContent (never innerHTML), so nothing in them is interpreted
 * or altered. Line breaks are kept by CSS (white-space: pre-wrap).
 *
 * New messages (a representative's reply) arrive live over a server-sent event
 * stream (EventSource). Polling stays as the fallback: slow while the stream is
 * open, back to every 1.5 s when it fails, and for good after repeated failures.
 */
(function () {
  "use strict";

  var API = "/api/webchat/sessions";
  var MESSAGES = "/api/webchat/messages";
  var RENEW_STREAM = "/api/webchat/session/stream";
  var SESSION_HEADER = "X-Chat-Session"; // the secret travels in a header, never in a URL
  var STORAGE_KEY = "hcpConcierge.webchat.sessionId";
  var STREAM_KEY = "hcpConcierge.webchat.streamUrl";
  var POLL_MS = 1500;
  var POLL_MAX_BACKOFF_MS = 15000;
  var POLL_WITH_STREAM_MS = 15000; // a safety net while the live stream is open
  var STREAM_MAX_FAILURES = 3; // consecutive failures before the page stays on polling

  var els = {};
  var state = {
    sessionId: null,
    streamUrl: null, // where the live stream of this session is (its cookie is scoped there)
    streamRenewing: false,
    cursor: 0, // highest message id received from the poll endpoint
    seen: new Set(), // ids already on screen
    pendingOutbound: [], // user bubbles shown before the server gave them an id
    awaitingReply: false, // the last POST answered "pending": its reply comes on the stream
    sending: false,
    failed: null, // the last request that failed, for "Try again"
    pollTimer: null,
    pollDelay: POLL_MS,
    polling: false,
    stream: null, // the EventSource, while there is one
    streamSession: null, // the session it belongs to
    streamOpen: false,
    streamFailures: 0, // consecutive, reset by every successful open
    streamDisabled: false,
  };

  // ---------------------------------------------------------------- storage

  /* The chat lives in localStorage, so closing the tab or opening a new one keeps it (the
     transcript is redrawn from the server); "forget it on this device" clears it. The secret is
     only ever sent in a header, never in a URL. */
  function store() {
    return window.localStorage;
  }

  function loadSessionId() {
    try {
      var id = store().getItem(STORAGE_KEY);
      if (!id && window.sessionStorage.getItem(STORAGE_KEY)) {
        id = window.sessionStorage.getItem(STORAGE_KEY); // a tab opened before this version
        store().setItem(STORAGE_KEY, id);
      }
      return id;
    } catch (e) {
      return null;
    }
  }

  function loadStreamUrl() {
    try {
      return store().getItem(STREAM_KEY);
    } catch (e) {
      return null;
    }
  }

  function saveSessionId(id, streamUrl) {
    if (id !== state.sessionId) {
      stopStream();
    }
    state.sessionId = id;
    state.streamUrl = id ? streamUrl || null : null;
    try {
      if (id) {
        store().setItem(STORAGE_KEY, id);
      } else {
        store().removeItem(STORAGE_KEY);
        window.sessionStorage.removeItem(STORAGE_KEY);
      }
      if (state.streamUrl) {
        store().setItem(STREAM_KEY, state.streamUrl);
      } else {
        store().removeItem(STREAM_KEY);
      }
    } catch (e) {
      /* storage disabled: the conversation simply will not survive a reload */
    }
  }

  // ---------------------------------------------------------------- HTTP

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  function request(method, url, body, sessionId) {
    var init = {
      method: method,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    };
    if (sessionId) {
      init.headers[SESSION_HEADER] = sessionId;
    }
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(
      function (resp) {
        return resp.text().then(function (raw) {
          var data = null;
          if (raw) {
            try {
              data = JSON.parse(raw);
            } catch (e) {
              data = null;
            }
          }
          if (!resp.ok) {
            var err = data && data.error ? data.error : null;
            throw new ApiError(
              resp.status,
              (err && err.code) || "http_" + resp.status,
              (err && err.message) || "Something went wrong (HTTP " + resp.status + "). Please try again."
            );
          }
          return data || {};
        });
      },
      function () {
        throw new ApiError(0, "network", "We couldn't reach the server. Check your connection and try again.");
      }
    );
  }

  function createSession() {
    return request("POST", API).then(function (data) {
      if (!data.session_id) {
        throw new ApiError(500, "bad_response", "The chat service returned an unexpected answer. Please try again.");
      }
      saveSessionId(String(data.session_id), data.stream_url ? String(data.stream_url) : null);
      state.cursor = 0;
      return state.sessionId;
    });
  }

  function ensureSession() {
    return state.sessionId ? Promise.resolve(state.sessionId) : createSession();
  }

  /* A session restored from storage may predate its stream cookie (or the cookie expired):
     the server issues it again, and says where the stream is. */
  function ensureStreamUrl(sessionId) {
    if (state.streamUrl) {
      return Promise.resolve(state.streamUrl);
    }
    return request("POST", RENEW_STREAM, undefined, sessionId).then(function (data) {
      if (sessionId === state.sessionId && data.stream_url) {
        saveSessionId(sessionId, String(data.stream_url));
      }
      return state.streamUrl;
    });
  }

  // ---------------------------------------------------------------- rendering

  function isNearBottom() {
    var box = els.scroller;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  }

  function scrollToEnd() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  function kindOf(message) {
    if (message.direction === "in") {
      return "user";
    }
    if (message.sender === "staff") {
      return "staff";
    }
    if (message.sender === "system") {
      return "system";
    }
    return "bot";
  }

  var SENDER_LABELS = {
    user: "You",
    bot: "HCP Concierge",
    staff: "Our team", // a staff message sent before speakers were labelled
    system: "Notice",
  };

  function buildMessage(kind, message) {
    var item = document.createElement("div");
    item.className = "msg msg-" + kind;
    item.setAttribute("data-testid", "message-" + kind);
    if (message.id !== undefined && message.id !== null) {
      item.setAttribute("data-message-id", String(message.id));
    }
    if (message.content_id) {
      item.setAttribute("data-content-id", String(message.content_id));
      if (message.content_version !== undefined && message.content_version !== null) {
        item.setAttribute("data-content-version", String(message.content_version));
      }
    }

    var label = document.createElement("div");
    label.className = "msg-sender";
    // Staff messages name the speaker: "Medical Information · MI-2026-000042", "Sam Rivera · your representative".
    label.textContent = (kind === "staff" && message.sender_label) || SENDER_LABELS[kind];
    if (kind === "user" || kind === "bot") {
      // The bubble side already says who spoke; keep the name for screen readers.
      label.classList.add("visually-hidden");
    }
    item.appendChild(label);

    var bubble = document.createElement("div");
    bubble.className = "msg-bubble";
    var body = document.createElement("p");
    body.className = "msg-text";
    body.setAttribute("data-testid", "message-text");
    body.textContent = message.text == null ? "" : String(message.text);
    bubble.appendChild(body);

    if (message.approval_code) {
      var badge = document.createElement("p");
      badge.className = "approval";
      badge.setAttribute("data-testid", "approval-code");
      badge.textContent = "Approved content · " + String(message.approval_code);
      bubble.appendChild(badge);
    }
    item.appendChild(bubble);

    var buttons = Array.isArray(message.buttons) ? message.buttons : [];
    if (buttons.length && kind !== "user") {
      var group = document.createElement("div");
      group.className = "quick-replies";
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "Suggested replies");
      buttons.forEach(function (button) {
        var chip = document.createElement("button");
        chip.type = "button";
        chip.className = "chip";
        chip.setAttribute("data-testid", "quick-reply");
        chip.textContent = String(button.title);
        chip.addEventListener("click", function () {
          onQuickReply(group, chip, String(button.title), String(button.payload));
        });
        group.appendChild(chip);
      });
      item.appendChild(group);
    }
    return item;
  }

  function appendMessage(message) {
    if (message.id !== undefined && message.id !== null) {
      if (state.seen.has(message.id)) {
        return null;
      }
      state.seen.add(message.id);
    }
    var kind = kindOf(message);
    if (kind === "user" && claimPendingOutbound(message)) {
      return null;
    }
    if (kind !== "user" && state.awaitingReply) {
      // The reply to a message the server was still working on has arrived on the stream.
      state.awaitingReply = false;
      setTyping(false);
    }
    var stick = isNearBottom();
    var node = buildMessage(kind, message);
    els.messages.appendChild(node);
    if (stick || kind === "user") {
      scrollToEnd();
    }
    return node;
  }

  /* A user bubble is shown at once; when the poll later returns the stored inbound
     message, it takes that bubble's place instead of appearing twice. */
  function claimPendingOutbound(message) {
    for (var i = 0; i < state.pendingOutbound.length; i += 1) {
      var pending = state.pendingOutbound[i];
      if (pending.text === String(message.text)) {
        pending.node.setAttribute("data-message-id", String(message.id));
        state.pendingOutbound.splice(i, 1);
        return true;
      }
    }
    return false;
  }

  function showLocalUserMessage(text) {
    var node = buildMessage("user", { text: text });
    node.classList.add("msg-pending");
    els.messages.appendChild(node);
    scrollToEnd();
    var pending = { text: text, node: node };
    state.pendingOutbound.push(pending);
    return pending;
  }

  function dropPending(pending) {
    var i = state.pendingOutbound.indexOf(pending);
    if (i >= 0) {
      state.pendingOutbound.splice(i, 1);
    }
    if (pending.node.parentNode) {
      pending.node.parentNode.removeChild(pending.node);
    }
  }

  function setTyping(on) {
    els.typing.hidden = !on;
    if (on) {
      scrollToEnd();
    }
  }

  function showError(message, retryable) {
    els.errorText.textContent = message;
    els.retry.hidden = !retryable;
    els.error.hidden = false;
  }

  function clearError() {
    els.error.hidden = true;
    els.errorText.textContent = "";
    els.retry.hidden = true;
  }

  function setSending(on) {
    state.sending = on;
    els.send.disabled = on;
    els.form.setAttribute("aria-busy", on ? "true" : "false");
  }

  // ---------------------------------------------------------------- composer

  function maxChars() {
    var n = parseInt(els.form.getAttribute("data-max-chars"), 10);
    return n > 0 ? n : 4096;
  }

  function updateCounter() {
    var len = els.input.value.length;
    var max = maxChars();
    if (len > max) {
      els.counter.textContent = len + " / " + max + " characters: too long";
      els.counter.classList.add("over");
    } else if (len > max - 200) {
      els.counter.textContent = len + " / " + max;
      els.counter.classList.remove("over");
    } else {
      els.counter.textContent = "";
      els.counter.classList.remove("over");
    }
  }

  function autosize() {
    els.input.style.height = "auto";
    els.input.style.height = Math.min(els.input.scrollHeight, 160) + "px";
  }

  function validate(text) {
    if (!text.trim()) {
      return "Please type a message before sending.";
    }
    var max = maxChars();
    if (text.length > max) {
      return "Your message is too long (" + text.length + " characters). The limit is " + max + " characters.";
    }
    return null;
  }

  /* Each send carries a client id; a retry reuses it, so the server stores the
     message once even when the first attempt did arrive. */
  function newClientMessageId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return (b < 16 ? "0" : "") + b.toString(16);
      })
      .join("");
  }

  function onSubmit(event) {
    event.preventDefault();
    if (state.sending) {
      return;
    }
    var text = els.input.value;
    var problem = validate(text);
    if (problem) {
      showError(problem, false);
      els.input.focus();
      return;
    }
    clearError();
    var sent = text;
    var failed = state.failed;
    var clientId =
      failed && failed.opts.restoreText === sent ? failed.body.client_message_id : newClientMessageId();
    els.input.value = "";
    updateCounter();
    autosize();
    send({ text: sent.trim(), client_message_id: clientId }, { restoreText: sent });
  }

  function onQuickReply(group, chip, title, payload) {
    if (state.sending) {
      return;
    }
    var chips = group.querySelectorAll("button");
    chips.forEach(function (c) {
      c.disabled = true;
    });
    chip.classList.add("chosen");
    chip.setAttribute("aria-pressed", "true");
    clearError();
    send({ text: title, payload: payload, client_message_id: newClientMessageId() }, { chips: chips, chosen: chip });
    els.input.focus();
  }

  // ---------------------------------------------------------------- waiting for a person

  /* The status of an open request for a person rides on every messages response. */
  function showWaiting(waiting) {
    if (waiting === undefined) {
      return; // an older response shape: leave the banner as it is
    }
    if (!waiting) {
      els.waiting.hidden = true;
      return;
    }
    var text =
      waiting.status === "claimed"
        ? "You are chatting with " + waiting.who + " (reference " + waiting.reference + ")."
        : "Waiting for " + waiting.who + " · reference " + waiting.reference + " · expected by " +
          waiting.expected_by + ". You can keep asking me questions meanwhile.";
    if (els.waitingText.textContent !== text) {
      els.waitingText.textContent = text;
    }
    els.waitingCancel.hidden = waiting.status !== "queued";
    els.waiting.hidden = false;
  }

  function onCancelWaiting() {
    if (state.sending) {
      return;
    }
    clearError();
    send({ text: "Cancel my request", payload: "/cancel_handoff", client_message_id: newClientMessageId() }, {});
  }

  function onForget() {
    stopStream();
    saveSessionId(null);
    resetConversationCursor();
    els.messages.textContent = "";
    showWaiting(null);
    els.input.focus();
  }

  function onKeyDown(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.form.requestSubmit ? els.form.requestSubmit() : onSubmit(event);
    }
  }

  // ---------------------------------------------------------------- sending

  function postMessage(body, allowNewSession) {
    return ensureSession()
      .then(function (sessionId) {
        return request("POST", MESSAGES, body, sessionId);
      })
      .catch(function (err) {
        if (err instanceof ApiError && err.status === 404 && allowNewSession) {
          // The session expired or is unknown: start a new one and send once more.
          saveSessionId(null);
          resetConversationCursor();
          return postMessage(body, false);
        }
        throw err;
      });
  }

  function resetConversationCursor() {
    state.cursor = 0;
  }

  function send(body, opts) {
    var pending = showLocalUserMessage(body.text);
    setSending(true);
    setTyping(true);
    return postMessage(body, true)
      .then(function (data) {
        pending.node.classList.remove("msg-pending");
        var replies = Array.isArray(data.messages) ? data.messages : [];
        replies.forEach(appendMessage);
        showWaiting(data.waiting);
        // Stored but not answered yet (a slow turn): keep "typing" until the reply streams in.
        state.awaitingReply = data.pending === true && replies.length === 0;
        state.failed = null;
        ensureStream();
        schedulePoll(0);
      })
      .catch(function (err) {
        dropPending(pending);
        if (opts.restoreText !== undefined) {
          // Nothing typed is lost: put the text back unless something new was typed.
          if (!els.input.value) {
            els.input.value = opts.restoreText;
          }
          updateCounter();
          autosize();
        }
        if (opts.chips) {
          opts.chips.forEach(function (c) {
            c.disabled = false;
          });
          opts.chosen.classList.remove("chosen");
          opts.chosen.removeAttribute("aria-pressed");
        }
        state.failed = { body: body, opts: opts };
        var message = err instanceof ApiError ? err.message : "Something went wrong. Please try again.";
        showError(message, true);
      })
      .then(function () {
        setSending(false);
        setTyping(state.awaitingReply === true);
      });
  }

  function onRetry() {
    var failed = state.failed;
    if (!failed || state.sending) {
      return;
    }
    clearError();
    if (failed.opts.restoreText !== undefined) {
      // The text is back in the box: resend exactly what is there now.
      els.form.requestSubmit ? els.form.requestSubmit() : onSubmit(new Event("submit"));
      return;
    }
    if (failed.opts.chips) {
      failed.opts.chips.forEach(function (c) {
        c.disabled = true;
      });
      failed.opts.chosen.classList.add("chosen");
    }
    send(failed.body, failed.opts);
  }

  // ---------------------------------------------------------------- live stream

  /* Messages from the stream have the relay's shape ({body, sender_type, ...});
     the page renders the messages endpoint's shape ({text, sender, ...}). */
  function fromStream(data) {
    return {
      id: data.id,
      text: data.body,
      direction: data.direction,
      sender: data.sender_type,
      sender_label: data.sender_label,
      content_id: data.content_id,
      content_version: data.content_version,
      approval_code: data.approval_code,
      buttons: data.buttons,
    };
  }

  function ensureStream() {
    if (state.streamDisabled || typeof window.EventSource !== "function" || !state.sessionId) {
      return;
    }
    if (state.stream && state.streamSession === state.sessionId) {
      return;
    }
    var sessionId = state.sessionId;
    if (!state.streamUrl) {
      if (!state.streamRenewing) {
        state.streamRenewing = true;
        ensureStreamUrl(sessionId)
          .then(function () {
            state.streamRenewing = false;
            if (state.streamUrl && sessionId === state.sessionId) {
              ensureStream();
            }
          })
          .catch(function () {
            state.streamRenewing = false; // polling goes on; the next poll tries again
          });
      }
      return;
    }
    stopStream();
    var source = new window.EventSource(state.streamUrl + "/events?after=" + encodeURIComponent(state.cursor));
    state.stream = source;
    state.streamSession = sessionId;
    source.addEventListener("open", function () {
      state.streamOpen = true;
      state.streamFailures = 0;
    });
    source.addEventListener("message", function (event) {
      if (sessionId !== state.sessionId) {
        return;
      }
      var data;
      try {
        data = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (!data || typeof data.id !== "number") {
        return;
      }
      if (data.id > state.cursor) {
        state.cursor = data.id;
      }
      appendMessage(fromStream(data));
    });
    source.addEventListener("error", function () {
      if (source !== state.stream) {
        return;
      }
      state.streamOpen = false;
      state.streamFailures += 1;
      // The browser reconnects by itself (resuming after the last message id) unless the
      // server refused the stream; either way polling covers the gap.
      if (source.readyState === window.EventSource.CLOSED || state.streamFailures >= STREAM_MAX_FAILURES) {
        stopStream();
        if (state.streamFailures >= STREAM_MAX_FAILURES) {
          state.streamDisabled = true;
        }
      }
      schedulePoll(0);
    });
  }

  function stopStream() {
    if (state.stream) {
      state.stream.close();
    }
    state.stream = null;
    state.streamSession = null;
    state.streamOpen = false;
  }

  // ---------------------------------------------------------------- polling

  function schedulePoll(delay) {
    if (state.pollTimer) {
      window.clearTimeout(state.pollTimer);
    }
    if (delay === undefined) {
      delay = state.streamOpen ? Math.max(state.pollDelay, POLL_WITH_STREAM_MS) : state.pollDelay;
    }
    state.pollTimer = window.setTimeout(poll, delay);
  }

  function poll() {
    state.pollTimer = null;
    if (!state.sessionId || state.polling) {
      schedulePoll();
      return;
    }
    state.polling = true;
    var sessionId = state.sessionId;
    request("GET", MESSAGES + "?after=" + encodeURIComponent(state.cursor), undefined, sessionId)
      .then(function (data) {
        if (sessionId !== state.sessionId) {
          return;
        }
        var messages = Array.isArray(data.messages) ? data.messages.slice() : [];
        messages.sort(function (a, b) {
          return a.id - b.id;
        });
        messages.forEach(function (m) {
          if (typeof m.id === "number" && m.id > state.cursor) {
            state.cursor = m.id;
          }
          appendMessage(m);
        });
        showWaiting(data.waiting);
        state.pollDelay = POLL_MS;
        ensureStream();
      })
      .catch(function (err) {
        if (err instanceof ApiError && err.status === 404 && sessionId === state.sessionId) {
          // Unknown session: the next message starts a new one.
          saveSessionId(null);
          resetConversationCursor();
        } else {
          state.pollDelay = Math.min(state.pollDelay * 2, POLL_MAX_BACKOFF_MS);
        }
      })
      .then(function () {
        state.polling = false;
        schedulePoll();
      });
  }

  // ---------------------------------------------------------------- start

  function init() {
    els.form = document.getElementById("composer");
    els.input = document.getElementById("chat-input");
    els.send = document.getElementById("send-button");
    els.messages = document.getElementById("messages");
    els.scroller = document.getElementById("chat");
    els.typing = document.getElementById("typing");
    els.error = document.getElementById("chat-error");
    els.errorText = document.getElementById("chat-error-text");
    els.retry = document.getElementById("retry-button");
    els.counter = document.getElementById("char-count");
    els.waiting = document.getElementById("waiting");
    els.waitingText = document.getElementById("waiting-text");
    els.waitingCancel = document.getElementById("waiting-cancel");
    els.waitingCancel.addEventListener("click", onCancelWaiting);
    document.getElementById("forget-chat").addEventListener("click", onForget);

    els.form.addEventListener("submit", onSubmit);
    els.input.addEventListener("keydown", onKeyDown);
    els.input.addEventListener("input", function () {
      updateCounter();
      autosize();
      if (!els.error.hidden && !state.failed) {
        clearError();
      }
    });
    els.retry.addEventListener("click", onRetry);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        schedulePoll(0);
      }
    });

    state.sessionId = loadSessionId();
    state.streamUrl = state.sessionId ? loadStreamUrl() : null;
    // A reload keeps the conversation: the first poll (after=0) redraws it.
    schedulePoll(0);
    els.input.focus();
    document.documentElement.setAttribute("data-webchat-ready", "true");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
