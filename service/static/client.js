/*
 * brokercast browser client: one websocket with reconnect and token handling.
 *
 *   const client = BrokercastClient.connect({
 *     channel: "orders",             // omit for every channel
 *     token: () => getTokenSomehow(), // string, or function returning one
 *     onEvent: (event) => console.log(event.channel, event.payload),
 *     onState: (state, detail) => console.log(state, detail),
 *   });
 *   client.close();
 *
 * The token travels as the subprotocol "bearer.<token>" next to "brokercast",
 * because a browser cannot set other headers on a websocket and a query
 * string ends up in proxy logs. A token function is called before every
 * attempt, so a refreshed token is used after an expiry (close code 1008).
 * After any close the client waits a random delay between half and all of
 * min(maxDelay, minDelay * 2^attempt) milliseconds, so clients of a restarted
 * server do not all come back at the same instant.
 */
(function (root) {
  "use strict";

  const SUBPROTOCOL = "brokercast";
  const ENVELOPE_KEYS = ["source", "channel", "position", "payload"];

  function defaultUrl(channel) {
    const scheme = root.location.protocol === "https:" ? "wss:" : "ws:";
    const path = channel ? encodeURIComponent(channel) : "";
    return scheme + "//" + root.location.host + "/" + path;
  }

  // Turn one frame into an event. The json codec's envelope gives channel,
  // position and timestamp; plain and raw frames carry only the payload.
  function parseFrame(data, channel) {
    if (typeof data !== "string") {
      return { channel: channel, position: null, timestamp: null,
               payload: new Uint8Array(data), envelope: false };
    }
    try {
      const value = JSON.parse(data);
      const isEnvelope = value !== null && typeof value === "object" &&
        ENVELOPE_KEYS.every((key) => key in value);
      if (isEnvelope) {
        return { channel: value.channel, position: value.position,
                 timestamp: value.timestamp, key: value.key,
                 headers: value.headers, payload: value.payload,
                 envelope: true };
      }
    } catch (error) {
      // Not JSON: a plain codec frame.
    }
    return { channel: channel, position: null, timestamp: null,
             payload: data, envelope: false };
  }

  function connect(options) {
    const minDelay = options.minDelay || 500;
    const maxDelay = options.maxDelay || 30000;
    const channel = options.channel || null;
    let socket = null;
    let timer = null;
    let attempt = 0;
    let stopped = false;

    function emitState(state, detail) {
      if (options.onState) options.onState(state, detail || {});
    }

    async function currentToken() {
      if (typeof options.token !== "function") return options.token || null;
      try {
        return await options.token();
      } catch (error) {
        return null;
      }
    }

    async function open() {
      timer = null;
      if (stopped) return;
      emitState("connecting", { attempt: attempt });
      const protocols = [SUBPROTOCOL];
      const token = await currentToken();
      if (token) protocols.push("bearer." + token);
      try {
        socket = new root.WebSocket(options.url || defaultUrl(channel), protocols);
      } catch (error) {
        retry({ code: 0, reason: String(error) });
        return;
      }
      socket.binaryType = "arraybuffer";
      socket.onopen = function () {
        attempt = 0;
        emitState("open", { url: socket.url });
      };
      socket.onmessage = function (message) {
        if (options.onEvent) options.onEvent(parseFrame(message.data, channel));
      };
      socket.onclose = function (close) {
        socket = null;
        if (stopped) {
          emitState("closed", { code: close.code });
        } else {
          retry({ code: close.code, reason: close.reason });
        }
      };
    }

    function retry(detail) {
      const ceiling = Math.min(maxDelay, minDelay * Math.pow(2, attempt));
      const delay = ceiling / 2 + Math.random() * ceiling / 2;
      attempt += 1;
      detail.delay = Math.round(delay);
      emitState("waiting", detail);
      timer = root.setTimeout(open, delay);
    }

    open();
    return {
      close: function () {
        stopped = true;
        if (timer !== null) root.clearTimeout(timer);
        if (socket !== null) {
          socket.close(1000);
        } else {
          emitState("closed", { code: 1000 });
        }
      },
    };
  }

  root.BrokercastClient = { connect: connect, parseFrame: parseFrame };
})(typeof self !== "undefined" ? self : this);
