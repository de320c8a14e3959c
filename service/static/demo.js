/*
 * The demo page: watch one channel or all of them, pause, clear.
 * The location hash carries the choices, e.g. #channel=orders&token=...,
 * so a link opens the same view and the token never reaches server logs.
 */
(function () {
  "use strict";

  const MAX_ROWS = 200;
  const PREVIEW_BYTES = 48;

  const elements = {};
  for (const id of ["state", "detail", "controls", "channel", "channels",
                    "pause", "clear", "received", "shown", "skipped",
                    "events", "empty"]) {
    elements[id] = document.getElementById(id);
  }

  const counts = { received: 0, shown: 0, skipped: 0 };
  const knownChannels = new Set();
  let paused = false;
  let client = null;
  let generation = 0;

  function hashParameters() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
  }

  function setState(state, detail) {
    elements.state.dataset.state = state;
    elements.state.textContent = state;
    let text = "";
    if (state === "open") text = "connected to " + detail.url;
    if (state === "waiting") {
      text = "closed (code " + detail.code + "), retrying in " +
        (detail.delay / 1000).toFixed(1) + " s";
    }
    if (state === "connecting" && detail.attempt) text = "attempt " + (detail.attempt + 1);
    elements.detail.textContent = text;
  }

  function formatAge(timestamp) {
    if (typeof timestamp !== "number") return "–";
    const milliseconds = Math.max(0, Date.now() - timestamp);
    if (milliseconds < 1000) return milliseconds + " ms";
    if (milliseconds < 60000) return (milliseconds / 1000).toFixed(1) + " s";
    return Math.round(milliseconds / 60000) + " min";
  }

  function formatPayload(payload) {
    if (payload instanceof Uint8Array) {
      const bytes = Array.from(payload.slice(0, PREVIEW_BYTES),
        (byte) => byte.toString(16).padStart(2, "0")).join(" ");
      const more = payload.length > PREVIEW_BYTES ? " …" : "";
      return payload.length + " bytes: " + bytes + more;
    }
    return typeof payload === "string" ? payload : JSON.stringify(payload);
  }

  function cell(className, text) {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text; // never innerHTML: payloads are untrusted
    return td;
  }

  function rememberChannel(channel) {
    if (!channel || knownChannels.has(channel)) return;
    knownChannels.add(channel);
    const option = document.createElement("option");
    option.value = channel;
    elements.channels.appendChild(option);
  }

  function updateCounters() {
    elements.received.textContent = counts.received;
    elements.shown.textContent = counts.shown;
    elements.skipped.textContent = counts.skipped;
    elements.empty.hidden = elements.events.rows.length > 0;
  }

  function showEvent(event) {
    counts.received += 1;
    rememberChannel(event.channel);
    if (paused) {
      counts.skipped += 1;
      updateCounters();
      return;
    }
    const row = document.createElement("tr");
    row.className = "fresh";
    row.dataset.channel = event.channel || "";
    row.append(
      cell("time", new Date().toLocaleTimeString([], { hour12: false })),
      cell("channel", event.channel || "–"),
      cell("position", event.position || "–"),
      cell("age", formatAge(event.timestamp)),
      cell("payload", formatPayload(event.payload)),
    );
    elements.events.prepend(row);
    while (elements.events.rows.length > MAX_ROWS) elements.events.lastChild.remove();
    counts.shown += 1;
    updateCounters();
  }

  function watch(channel) {
    if (client !== null) client.close();
    const parameters = hashParameters();
    if (channel) parameters.set("channel", channel); else parameters.delete("channel");
    history.replaceState(null, "", "#" + parameters.toString());
    elements.channel.value = channel;
    // A closed client may still report its close; only the newest one counts.
    const mine = ++generation;
    client = BrokercastClient.connect({
      channel: channel,
      token: parameters.get("token"),
      onEvent: (event) => { if (mine === generation) showEvent(event); },
      onState: (state, detail) => { if (mine === generation) setState(state, detail); },
    });
  }

  elements.controls.addEventListener("submit", function (submit) {
    submit.preventDefault();
    watch(elements.channel.value.trim());
  });
  elements.pause.addEventListener("click", function () {
    paused = !paused;
    elements.pause.textContent = paused ? "Resume" : "Pause";
    elements.pause.setAttribute("aria-pressed", String(paused));
  });
  elements.clear.addEventListener("click", function () {
    elements.events.replaceChildren();
    counts.received = counts.shown = counts.skipped = 0;
    updateCounters();
  });

  watch(hashParameters().get("channel") || "");
})();
