// Hark live captions: audio from the microphone (or ?src=URL) to harkd's native WebSocket
// protocol (/v1/listen), captions rendered as they arrive. Committed text is steady; the
// tentative tail is drawn apart and replaced by each partial. See protocol/README.md.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const RATE = 16000;            // what this page sends when it can choose
  const FRAME_S = 0.05;          // audio per WebSocket frame
  const KEEP_FINALS = 200;       // finals kept in the page (the view shows the last lines)

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    start: $("start"),
    stop: $("stop"),
    save: $("save"),
    finals: $("finals"),
    committed: $("committed"),
    tentative: $("tentative"),
    confirm: $("confirm"),
    confirmText: $("confirm-text"),
    confirmSend: $("confirm-send"),
    confirmLocal: $("confirm-local"),
  };

  /** Finished segments, for the .vtt download. */
  const cues = [];
  let socket = null;
  let stopAudio = () => {};
  let failed = false;

  function setState(state, text) {
    document.body.dataset.state = state;
    if (text !== undefined) ui.status.textContent = text;
  }

  function fail(text) {
    failed = true;
    setState("error", text);
    stopAudio();
    ui.start.hidden = false;
    ui.stop.hidden = true;
  }

  /** The harkd this page serves from. */
  function ownServer() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  }

  // A link may name another server (?server=); audio goes there only once the user agreed.
  let server = params.get("server") || ownServer();
  let serverConfirmed = false;

  /** The named server is not the one serving this page. */
  function isForeign(base) {
    try {
      return new URL(base.replace(/^http/, "ws")).host !== location.host;
    } catch {
      return true;
    }
  }

  /** Run `action` once audio may go to `server`: at once for this page's own server, after
   *  an explicit confirmation naming it for any other. */
  function whenAllowed(action) {
    if (!isForeign(server) || serverConfirmed) {
      action();
      return;
    }
    let named;
    try {
      named = shownUrl(serverUrl());
    } catch {
      named = server;
    }
    ui.start.hidden = true;
    setState("confirm", "Waiting for your confirmation.");
    ui.confirmText.textContent =
      `This link asks to send your audio to ${named}, which is not the server of this page ` +
      `(${location.host}). Only agree if you trust that server.`;
    ui.confirmSend.textContent = `Send audio to ${named}`;
    ui.confirm.hidden = false;
    ui.confirmSend.onclick = () => {
      serverConfirmed = true;
      ui.confirm.hidden = true;
      action();
    };
    ui.confirmLocal.onclick = () => {
      server = ownServer();
      ui.confirm.hidden = true;
      action();
    };
  }

  function serverUrl() {
    const url = new URL(server.replace(/^http/, "ws"));
    if (url.pathname === "/" || url.pathname === "") url.pathname = "/v1/listen";
    const token = params.get("token");
    if (token) url.searchParams.set("token", token);
    return url;
  }

  function shownUrl(url) {
    const copy = new URL(url);
    copy.searchParams.delete("token");
    return copy.toString();
  }

  // --- captions -----------------------------------------------------------------------

  /** Joins a new piece of text to what is shown, with one space between segments. */
  function spaced(text) {
    const before = ui.finals.textContent;
    if (!text || !before || /\s$/.test(before) || /^\s/.test(text)) return text;
    return " " + text;
  }

  function onPartial(msg) {
    ui.committed.textContent = spaced(msg.committed);
    ui.tentative.textContent = msg.committed ? msg.tentative : spaced(msg.tentative);
  }

  function onFinal(msg) {
    ui.committed.textContent = "";
    ui.tentative.textContent = "";
    const text = msg.text.trim();
    if (!text) return;
    const span = document.createElement("span");
    span.className = "final";
    span.dataset.start = msg.start;
    span.dataset.end = msg.end;
    span.textContent = spaced(text);
    ui.finals.appendChild(span);
    while (ui.finals.childElementCount > KEEP_FINALS) ui.finals.firstElementChild.remove();
    cues.push({ start: msg.start, end: msg.end, text });
    updateDownload();
  }

  function vttTime(t) {
    const ms = Math.max(0, Math.round(t * 1000));
    const pad = (n, w) => String(n).padStart(w, "0");
    return `${pad(Math.floor(ms / 3600000), 2)}:${pad(Math.floor(ms / 60000) % 60, 2)}:` +
      `${pad(Math.floor(ms / 1000) % 60, 2)}.${pad(ms % 1000, 3)}`;
  }

  function updateDownload() {
    let vtt = "WEBVTT\n\n";
    let last = 0;
    for (const c of cues) {
      const start = Math.max(c.start, last);
      const end = Math.max(c.end, start + 0.001);
      last = end;
      vtt += `${vttTime(start)} --> ${vttTime(end)}\n${c.text}\n\n`;
    }
    if (ui.save.href) URL.revokeObjectURL(ui.save.href);
    ui.save.href = URL.createObjectURL(new Blob([vtt], { type: "text/vtt" }));
    ui.save.hidden = false;
  }

  // --- the session --------------------------------------------------------------------

  /** Opens the session; resolves once harkd is ready for audio. */
  function connect(sampleRate, encoding) {
    const url = serverUrl();
    setState("connecting", `Connecting to ${shownUrl(url)}…`);
    return new Promise((resolve, reject) => {
      let ready = false;
      let closedCleanly = false;
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      socket = ws;
      ws.onopen = () => {
        const start = { type: "start", sample_rate: sampleRate, encoding, label: "captions-page" };
        const lang = params.get("lang");
        if (lang) start.language = lang;
        ws.send(JSON.stringify(start));
      };
      ws.onmessage = (event) => {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return;
        }
        switch (msg.type) {
          case "ready":
            ready = true;
            setState("listening", `Listening (${msg.model})`);
            resolve(ws);
            break;
          case "partial":
            onPartial(msg);
            break;
          case "final":
            onFinal(msg);
            break;
          case "error":
            if (msg.fatal) {
              const why = msg.code === "unauthorized"
                ? `harkd refused the token: ${msg.message}. Add ?token=… to this page's address.`
                : `harkd: ${msg.message} (${msg.code})`;
              fail(why);
              reject(new Error(why));
            } else {
              console.warn("harkd:", msg.code, msg.message);
            }
            break;
          case "closed":
            closedCleanly = true;
            if (!failed) {
              setState("done", `Finished: ${msg.segments} segment(s), ${msg.audio_s.toFixed(1)} s of audio.`);
            }
            break;
          default:
            break; // message types from newer servers
        }
      };
      ws.onclose = () => {
        stopAudio();
        ui.start.hidden = false;
        ui.stop.hidden = true;
        if (!ready && !failed) {
          const why = `Cannot reach harkd at ${shownUrl(url)}. Is it running?`;
          fail(why);
          reject(new Error(why));
        } else if (!closedCleanly && !failed) {
          fail("The connection to harkd was lost.");
        }
      };
    });
  }

  function sendClose() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "close" }));
    }
  }

  function toS16(samples) {
    const out = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const v = Math.max(-1, Math.min(1, samples[i]));
      out[i] = v < 0 ? v * 32768 : v * 32767;
    }
    return out.buffer;
  }

  // --- audio from a URL ---------------------------------------------------------------

  async function streamUrl(src) {
    setState("loading", `Loading ${src}…`);
    let decoded;
    try {
      const response = await fetch(src);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const bytes = await response.arrayBuffer();
      // An offline context at 16 kHz decodes and resamples in one step, without an output.
      decoded = await new OfflineAudioContext(1, 1, RATE).decodeAudioData(bytes);
    } catch (e) {
      fail(`Cannot load audio from ${src}: ${e.message}`);
      return;
    }
    const mono = new Float32Array(decoded.length);
    for (let c = 0; c < decoded.numberOfChannels; c++) {
      const data = decoded.getChannelData(c);
      for (let i = 0; i < mono.length; i++) mono[i] += data[i] / decoded.numberOfChannels;
    }
    let ws;
    try {
      ws = await connect(RATE, "s16le");
    } catch {
      return;
    }
    const fast = params.get("fast") === "1";
    const frame = Math.round(RATE * FRAME_S);
    const began = performance.now();
    let stopped = false;
    stopAudio = () => { stopped = true; };
    ui.stop.hidden = false;
    ui.start.hidden = true;
    for (let at = 0; at < mono.length && !stopped; at += frame) {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(toS16(mono.subarray(at, Math.min(at + frame, mono.length))));
      if (!fast) {
        // Real time: frame k is sent once the audio up to its end has "happened".
        const due = began + ((at + frame) / RATE) * 1000;
        await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
      }
    }
    sendClose();
  }

  // --- audio from the microphone ------------------------------------------------------

  const TAP = `
    class HarkTap extends AudioWorkletProcessor {
      process(inputs) {
        const channel = inputs[0] && inputs[0][0];
        if (channel) this.port.postMessage(channel.slice(0));
        return true;
      }
    }
    registerProcessor("hark-tap", HarkTap);`;

  async function streamMicrophone() {
    ui.start.hidden = true;
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: true },
      });
    } catch (e) {
      const why = e.name === "NotFoundError" || e.name === "OverconstrainedError"
        ? "No microphone found. Add ?src=URL to this page's address to caption an audio file instead."
        : e.name === "NotAllowedError"
          ? "Microphone access was denied."
          : `Cannot open the microphone: ${e.message}`;
      fail(why);
      return;
    }
    // Ask for 16 kHz so the browser resamples; some browsers only capture at the device rate.
    let ctx;
    let source;
    try {
      ctx = new AudioContext({ sampleRate: RATE });
      source = ctx.createMediaStreamSource(media);
    } catch {
      if (ctx) ctx.close();
      ctx = new AudioContext();
      source = ctx.createMediaStreamSource(media);
    }
    const rate = ctx.sampleRate;
    const url = URL.createObjectURL(new Blob([TAP], { type: "application/javascript" }));
    await ctx.audioWorklet.addModule(url);
    const tap = new AudioWorkletNode(ctx, "hark-tap");
    const frame = Math.round(rate * FRAME_S);
    let pending = [];
    let pendingLen = 0;
    let ws = null;
    tap.port.onmessage = (event) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      pending.push(event.data);
      pendingLen += event.data.length;
      if (pendingLen < frame) return;
      const joined = new Float32Array(pendingLen);
      let at = 0;
      for (const p of pending) { joined.set(p, at); at += p.length; }
      pending = [];
      pendingLen = 0;
      ws.send(toS16(joined));
    };
    source.connect(tap);
    stopAudio = () => {
      media.getTracks().forEach((t) => t.stop());
      ctx.close().catch(() => {});
      stopAudio = () => {};
    };
    try {
      ws = await connect(Math.round(rate), "s16le");
    } catch {
      return;
    }
    await ctx.resume();
    ui.stop.hidden = false;
  }

  ui.start.addEventListener("click", () => {
    failed = false;
    whenAllowed(streamMicrophone);
  });
  ui.stop.addEventListener("click", () => {
    stopAudio();
    sendClose();
    ui.stop.hidden = true;
  });

  const src = params.get("src");
  if (src) {
    ui.start.hidden = true;
    whenAllowed(() => streamUrl(src));
  } else if (params.get("autostart") === "1") {
    // Never toward another server without a click: whenAllowed asks first.
    whenAllowed(streamMicrophone);
  } else {
    setState("idle", "Press “Start microphone” to caption what you say.");
  }
})();
