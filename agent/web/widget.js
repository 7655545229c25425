/* voice-agent call widget: one file, no dependencies.
 *
 * Embed:
 *   <div data-voice-agent data-server="https://agent.example.com" data-to="web"
 *        data-title="Talk to us"></div>
 *   <script src="https://agent.example.com/widget/widget.js" defer></script>
 *
 * Every element with data-voice-agent becomes a widget. data-server defaults to this page's
 * origin; data-to picks the dialplan (the "called user"). The page must be served over HTTPS
 * (or from localhost) for the browser to allow the microphone.
 * Script API: VoiceAgentWidget.mount(element, {server, to, title, token}) returns the widget.
 * With webrtc.require_token on the agent, each call needs a token from the site's backend
 * (POST /v1/webrtc/token): `token` is a function returning one (or a promise of one), called
 * per call; data-token gives a fixed one (good for one call only).
 */
(function () {
  "use strict";

  var CSS = [
    ".va{font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2430;background:#fff;",
    "border:1px solid #dfe3ea;border-radius:16px;box-shadow:0 6px 24px rgba(20,30,50,.08);",
    "width:100%;max-width:400px;box-sizing:border-box;padding:18px;display:flex;flex-direction:column;gap:12px}",
    ".va *{box-sizing:border-box}.va [hidden]{display:none!important}",
    ".va svg{width:18px;height:18px;fill:currentColor;flex:none}",
    ".va-head{display:flex;align-items:center;justify-content:space-between;gap:8px}",
    ".va-title{font-weight:650;font-size:17px}",
    ".va-state{font-size:13px;color:#5b6577;display:flex;align-items:center;gap:6px}",
    ".va-dot{width:9px;height:9px;border-radius:50%;background:#aab2bf}",
    ".va[data-state=connected] .va-dot,.va[data-state=listening] .va-dot{background:#1e9e4a}",
    ".va[data-state=speaking] .va-dot{background:#e07b00;animation:va-pulse 1s infinite}",
    ".va[data-state=thinking] .va-dot{background:#2f6fdf;animation:va-pulse 1s infinite}",
    ".va[data-state=ringing] .va-dot{background:#2f6fdf;animation:va-pulse .6s infinite}",
    "@keyframes va-pulse{50%{opacity:.3}}",
    ".va-buttons{display:flex;gap:10px}",
    ".va button{flex:1;border:0;border-radius:999px;padding:12px 16px;font:inherit;font-weight:600;",
    "cursor:pointer;display:flex;align-items:center;justify-content:center;gap:8px;min-height:46px}",
    ".va button:disabled{opacity:.5;cursor:default}",
    ".va button:focus-visible{outline:3px solid #9cc1ff;outline-offset:2px}",
    ".va-call{background:#1e9e4a;color:#fff}.va-hangup{background:#d93025;color:#fff}",
    ".va-mute{background:#eef1f5;color:#1d2430}.va-mute[aria-pressed=true]{background:#ffe8cc}",
    ".va-error{background:#fdecea;color:#8c1d18;border-radius:10px;padding:10px 12px;font-size:14px}",
    ".va-captions{min-height:120px;max-height:260px;overflow-y:auto;background:#f6f7f9;",
    "border-radius:10px;padding:10px 12px;display:flex;flex-direction:column;gap:6px;font-size:14px}",
    ".va-captions:empty::before{content:attr(data-empty);color:#8a93a3}",
    ".va-line{max-width:88%;padding:6px 10px;border-radius:12px}",
    ".va-line.agent{background:#fff;border:1px solid #e4e7ec;align-self:flex-start}",
    ".va-line.caller{background:#dbe7fb;align-self:flex-end}",
    ".va-who{display:block;font-size:11px;color:#5b6577;font-weight:600}",
    "@media (max-width:480px){.va{max-width:none;border-radius:12px;padding:14px}}",
  ].join("");

  var STATES = {
    idle: "Ready", mic: "Asking for the microphone…", ringing: "Connecting…",
    connected: "Connected", greeting: "Agent speaking", speaking: "Agent speaking",
    listening: "Listening", thinking: "Thinking…", transferring: "Transferring…", ended: "Call ended",
  };
  // Icons as inline SVG paths: no font or file to load.
  var ICONS = {
    phone: "M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25 11.4 11.4 0 0 0 3.6.57 1 1 0 0 1 1 " +
      "1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 " +
      "1-.25 1z",
    mic: "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.92V21h2" +
      "v-3.08A7 7 0 0 0 19 11z",
    micOff: "M19 11h-2a5 5 0 0 1-.7 2.6l1.5 1.5A7 7 0 0 0 19 11zM15 11V5a3 3 0 0 0-5.9-.8L15 10.1zM4.3 " +
      "3 3 4.3l6 6V11a3 3 0 0 0 4.4 2.7l1.6 1.6A5 5 0 0 1 7 11H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 " +
      "3.4-1.3l3.3 3.3 1.3-1.3z",
  };
  function button(cls, icon, text) {
    var b = el("button", cls);
    b.type = "button";
    b.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="' + ICONS[icon] + '"/></svg>';
    b.appendChild(el("span", "", text));
    return b;
  }
  var MIC_DENIED = "Microphone access is blocked. Allow the microphone for this site " +
    "(the icon in the address bar, or the browser's site settings), then press Call again.";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }

  function Widget(root, opts) {
    this.server = (opts.server || window.location.origin).replace(/\/$/, "");
    this.to = opts.to || "";
    this.token = opts.token || "";
    this.state = "idle";
    this.pc = null;
    this.captions = [];  // {who, text}: what the page showed, for people and tests alike
    this._build(root, opts.title || "Talk to us");
  }

  Widget.prototype._build = function (root, title) {
    if (!document.getElementById("va-style")) {
      var style = el("style");
      style.id = "va-style";
      style.textContent = CSS;
      document.head.appendChild(style);
    }
    var box = this.box = el("section", "va");
    box.setAttribute("aria-label", title);
    var head = el("div", "va-head");
    head.appendChild(el("div", "va-title", title));
    var state = el("div", "va-state");
    state.appendChild(el("span", "va-dot"));
    this.stateText = el("span", "va-state-text");
    this.stateText.setAttribute("role", "status");
    state.appendChild(this.stateText);
    head.appendChild(state);
    this.error = el("div", "va-error");
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    var buttons = el("div", "va-buttons");
    this.callBtn = button("va-call", "phone", "Call");
    this.muteBtn = button("va-mute", "mic", "Mute");
    this.muteBtn.setAttribute("aria-pressed", "false");
    this.hangBtn = button("va-hangup", "phone", "Hang up");
    this.hangBtn.querySelector("svg").style.transform = "rotate(135deg)";
    [this.callBtn, this.muteBtn, this.hangBtn].forEach(function (b) { buttons.appendChild(b); });
    this.lines = el("div", "va-captions");
    this.lines.setAttribute("aria-live", "polite");
    this.lines.setAttribute("data-empty", "Captions of the call appear here.");
    this.audio = el("audio");
    this.audio.autoplay = true;
    [head, this.error, buttons, this.lines, this.audio].forEach(function (c) { box.appendChild(c); });
    root.appendChild(box);
    var self = this;
    this.callBtn.onclick = function () { self.call(); };
    this.hangBtn.onclick = function () { self.hangup(); };
    this.muteBtn.onclick = function () { self.toggleMute(); };
    this._setState("idle");
  };

  Widget.prototype._setState = function (state) {
    this.state = state;
    this.box.setAttribute("data-state", state);
    this.stateText.textContent = STATES[state] || state;
    var inCall = ["idle", "ended"].indexOf(state) < 0;
    this.callBtn.hidden = inCall;
    this.muteBtn.hidden = this.hangBtn.hidden = !inCall;
    this.callBtn.disabled = state === "mic";
  };

  Widget.prototype._showError = function (text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  };

  Widget.prototype._caption = function (who, text) {
    this.captions.push({ who: who, text: text });
    var last = this.lines.lastElementChild;
    if (last && last.getAttribute("data-who") === who && who === "agent") {
      last.querySelector(".va-text").textContent += " " + text;  // one bubble per agent turn
    } else {
      var line = el("div", "va-line " + who);
      line.setAttribute("data-who", who);
      line.appendChild(el("span", "va-who", who === "agent" ? "Agent" : "You"));
      line.appendChild(el("span", "va-text", text));
      this.lines.appendChild(line);
    }
    this.lines.scrollTop = this.lines.scrollHeight;
  };

  Widget.prototype._onEvent = function (raw) {
    var ev;
    try { ev = JSON.parse(raw); } catch (e) { return; }
    if (ev.type === "caption") this._caption(ev.who, ev.text);
    else if (ev.type === "state" && this.state !== "idle") {
      if (ev.state === "ended") this._end();
      else this._setState(ev.state);
    }
  };

  Widget.prototype.call = async function () {
    this._showError("");
    this.lines.textContent = "";
    this.captions = [];
    if (!navigator.mediaDevices || !window.RTCPeerConnection) {
      this._showError("This browser cannot make calls (no WebRTC or microphone access; HTTPS is required).");
      return;
    }
    this._setState("mic");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (e) {
      this._setState("idle");
      this._showError(e && (e.name === "NotAllowedError" || e.name === "SecurityError") ? MIC_DENIED
        : e && e.name === "NotFoundError" ? "No microphone was found. Connect one and press Call again."
        : "The microphone could not be opened (" + (e && e.name) + ").");
      return;
    }
    this._setState("ringing");
    var self = this;
    var pc = this.pc = new RTCPeerConnection({ iceServers: [] });
    this.stream.getTracks().forEach(function (t) { pc.addTrack(t, self.stream); });
    var channel = this.channel = pc.createDataChannel("events");
    channel.onmessage = function (m) { self._onEvent(m.data); };
    pc.ontrack = function (e) {
      self.audio.srcObject = e.streams[0] || new MediaStream([e.track]);
      var p = self.audio.play();
      if (p && p.catch) p.catch(function () {});
    };
    pc.onconnectionstatechange = function () {
      if (pc !== self.pc) return;
      if (pc.connectionState === "connected" && self.state === "ringing") self._setState("connected");
      if (pc.connectionState === "failed") { self._showError("The call's audio could not connect."); self._end(); }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 3000);
      var token = typeof this.token === "function" ? await this.token() : this.token;
      var resp = await fetch(this.server + "/v1/webrtc/offer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, to: this.to || undefined,
                               token: token || undefined }),
      });
      var body = await resp.json().catch(function () { return {}; });
      if (!resp.ok) throw new Error(body.error || "the agent answered " + resp.status);
      this.callId = body.call_id;
      await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
    } catch (e) {
      this._showError("The call could not be placed: " + e.message);
      this._end();
    }
  };

  Widget.prototype.toggleMute = function () {
    if (!this.stream) return;
    var muted = this.muteBtn.getAttribute("aria-pressed") !== "true";
    this.stream.getAudioTracks().forEach(function (t) { t.enabled = !muted; });
    this._setMuted(muted);
  };

  Widget.prototype._setMuted = function (muted) {
    this.muteBtn.setAttribute("aria-pressed", String(muted));
    this.muteBtn.querySelector("path").setAttribute("d", ICONS[muted ? "micOff" : "mic"]);
    this.muteBtn.querySelector("span").textContent = muted ? "Unmute" : "Mute";
  };

  Widget.prototype.hangup = function () {
    if (this.channel && this.channel.readyState === "open") this.channel.send(JSON.stringify({ type: "hangup" }));
    this._end();
  };

  Widget.prototype._end = function () {
    var pc = this.pc;
    this.pc = null;
    if (pc) setTimeout(function () { pc.close(); }, 200);  // let the hangup message go out
    if (this.stream) this.stream.getTracks().forEach(function (t) { t.stop(); });
    this.stream = null;
    this._setMuted(false);
    this._setState(this.state === "idle" ? "idle" : "ended");
  };

  function gathered(pc, timeoutMs) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") return resolve();
      var done = function () { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, timeoutMs);
    });
  }

  var api = {
    widgets: [],
    mount: function (root, opts) {
      var w = new Widget(root, opts || {});
      api.widgets.push(w);
      return w;
    },
  };
  window.VoiceAgentWidget = api;

  function mountAll() {
    document.querySelectorAll("[data-voice-agent]").forEach(function (root) {
      if (root.getAttribute("data-voice-agent-mounted")) return;
      root.setAttribute("data-voice-agent-mounted", "1");
      api.mount(root, { server: root.dataset.server, to: root.dataset.to, title: root.dataset.title,
                        token: root.dataset.token });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
