// treadlab station: the runner display. Big, few words, readable from 3 m; every state is a
// word and a symbol as well as a colour.
"use strict";

const WORDS = {
  in: ["✓", "ON TARGET"], high: ["▲", "TOO HIGH"], low: ["▼", "TOO LOW"], none: ["…", "COLLECTING STEPS"],
};
window.__shown = [];          // [{n, seq_off, t_ms}] for benchmarks: when the DOM changed
let cueNames = "";
let settings = null;
let link = null;
let trialId = null;

function nowMs() { return performance.timeOrigin + performance.now(); }

function buildCues(cues) {
  const main = document.getElementById("cues");
  main.replaceChildren();
  main.className = cues.length > 1 ? "two" : "one";
  for (const c of cues) {
    const box = el("section", { class: "cue state-none", id: "cue-" + c.name, "data-state": "none" });
    box.append(el("div", { class: "label", text: c.label }));
    const row = el("div", { class: "row" });
    row.append(el("span", { class: "value", id: "value-" + c.name, "data-step": "0", text: "--" }),
               el("span", { class: "unit", text: c.unit }));
    box.append(row);
    box.append(el("div", { class: "word", id: "word-" + c.name, text: WORDS.none.join(" ") }));
    const bar = el("div", { class: "bar" });
    bar.append(el("div", { class: "band", id: "band-" + c.name }), el("div", { class: "marker", id: "marker-" + c.name, text: "▼" }));
    box.append(bar);
    box.append(el("div", { class: "target", id: "target-" + c.name, text: "target " + c.lo + "–" + c.hi + " " + c.unit }));
    main.append(box);
  }
}

function cueSettings(fb) {
  const labels = {
    pelvic_drop: ["Pelvic drop", "°"], trunk_lean: ["Trunk lean", "°"], heel_lead: ["Heel ahead of pelvis", "mm"],
    hip_extension: ["Hip extension", "°"], cadence: ["Cadence", "steps/min"], contact_time: ["Contact time", "s"],
  };
  return fb.cues.map((n) => ({ name: n, label: labels[n][0], unit: labels[n][1], lo: fb.bands[n][0], hi: fb.bands[n][1] }));
}

function place(c) {
  // the bar spans the band widened by its own width on each side
  const span = c.hi - c.lo;
  const lo = c.lo - span, hi = c.hi + span;
  const band = document.getElementById("band-" + c.name);
  band.style.left = "33.333%"; band.style.width = "33.333%";
  const marker = document.getElementById("marker-" + c.name);
  if (c.value === null || c.value === undefined) { marker.style.visibility = "hidden"; return; }
  const x = Math.max(0, Math.min(1, (c.value - lo) / (hi - lo)));
  marker.style.visibility = "visible";
  marker.style.left = (100 * x) + "%";
}

function onStep(msg) {
  if (msg.cues.map((c) => c.name).join(",") !== cueNames) {
    cueNames = msg.cues.map((c) => c.name).join(",");
    buildCues(msg.cues);
  }
  const sched = document.getElementById("schedule");
  if (!msg.show) {
    for (const c of msg.cues) {
      document.getElementById("value-" + c.name).textContent = "--";
      document.getElementById("word-" + c.name).textContent = "FEEDBACK PAUSED";
      const box = document.getElementById("cue-" + c.name);
      box.className = "cue state-paused"; box.dataset.state = "paused";
      document.getElementById("marker-" + c.name).style.visibility = "hidden";
    }
    document.getElementById("cadence").textContent = "--";
    sched.textContent = msg.fading === "none" ? "No feedback this trial: keep the feel."
                                              : "Feedback on some steps only: keep the feel.";
    return;
  }
  for (const c of msg.cues) {
    const v = document.getElementById("value-" + c.name);
    const digits = c.unit === "s" ? 2 : 0;
    v.textContent = c.value === null ? "--" : Number(c.value).toFixed(c.unit === "°" ? 1 : digits);
    v.dataset.step = String(msg.n);
    const [sym, word] = WORDS[c.state] || WORDS.none;
    document.getElementById("word-" + c.name).textContent = sym + " " + word;
    const box = document.getElementById("cue-" + c.name);
    box.className = "cue state-" + c.state; box.dataset.state = c.state;
    document.getElementById("target-" + c.name).textContent = "target " + c.lo + "–" + c.hi + " " + c.unit;
    place(c);
  }
  const cad = document.getElementById("cadence");
  cad.textContent = msg.cadence === null ? "--" : Number(msg.cadence).toFixed(0);
  cad.dataset.step = String(msg.n);
  sched.textContent = "";
  const t = nowMs();                      // the DOM has changed: report when
  window.__shown.push({ n: msg.n, seq_off: msg.seq_off, t_ms: t });
  if (window.__shown.length > 20000) window.__shown.splice(0, 10000);
  link.send({ type: "shown", n: msg.n, t_ms: t, trial: msg.trial });
}

function onState(s) {
  settings = s.feedback;
  const t = s.trial;
  const st = document.getElementById("status");
  if (t && t.kind === "running") {
    const m = Math.floor(t.elapsed_s / 60), sec = Math.floor(t.elapsed_s % 60);
    st.textContent = "● Running " + (t.protocol ? "speed protocol" : t.speed_m_s + " m/s") + " — " + m + ":" + String(sec).padStart(2, "0")
      + (t.duration_s ? " of " + Math.round(t.duration_s) + " s" : "");
  } else if (t) {
    st.textContent = "● Static trial: stand still, arms relaxed — " + Math.floor(t.elapsed_s) + " s";
  } else {
    st.textContent = "Waiting for the next trial…";
  }
  renderStage(t);
  if (t && t.id !== trialId) { trialId = t.id; cueNames = ""; }
  const wanted = cueSettings(settings);
  if (wanted.map((c) => c.name).join(",") !== cueNames) {
    cueNames = wanted.map((c) => c.name).join(",");
    buildCues(wanted);
  }
  metronome.configure(settings.metronome, settings.metronome_spm);
}

// --- speed protocol: the stage's belt speed and the time left in it ----------------------
let stageEnd = null;          // performance.now() ms when the current stage ends
function renderStage(t) {
  const box = document.getElementById("stage");
  const st = t && t.stage;
  box.hidden = !st;
  if (!st) { stageEnd = null; return; }
  const sp = document.getElementById("stage-speed");
  sp.textContent = Number(st.speed_m_s).toFixed(1);
  sp.dataset.stage = String(st.n);
  stageEnd = performance.now() + 1000 * st.left_s;
  document.getElementById("stage-next").textContent = "stage " + st.n + "/" + st.of
    + (st.next_m_s !== null ? " · next " + Number(st.next_m_s).toFixed(1) + " m/s" : " · last stage");
  tickStage();
}
function tickStage() {
  if (stageEnd === null) return;
  const left = Math.max(0, Math.ceil((stageEnd - performance.now()) / 1000));
  document.getElementById("stage-left").textContent =
    Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") + " left";
}
setInterval(tickStage, 250);

// --- step metronome: one click per step (WebAudio), and a visible beat -------------------
const metronome = {
  ctx: null, on: false, spm: 175, next: 0, timer: null,
  configure(on, spm) {
    this.on = on; this.spm = spm;
    document.getElementById("sound").hidden = !on;
    if (on && !this.timer) this.timer = setInterval(() => this.tick(), 25);
    if (!on && this.timer) { clearInterval(this.timer); this.timer = null; }
  },
  enable() {
    if (!this.ctx) this.ctx = new (window.AudioContext || window.webkitAudioContext)();
    this.ctx.resume();
    this.next = this.ctx.currentTime + 0.1;
    document.getElementById("sound").textContent = "Sound is on";
  },
  tick() {
    const period = 60 / this.spm;
    if (!this.ctx) {           // no sound allowed yet: the visible beat alone
      const now = performance.now() / 1000;
      if (now >= this.next) { this.flash(); this.next = now + period; }
      return;
    }
    while (this.next < this.ctx.currentTime + 0.1) {
      const osc = this.ctx.createOscillator(), gain = this.ctx.createGain();
      osc.frequency.value = 1000;
      gain.gain.setValueAtTime(0.5, this.next);
      gain.gain.exponentialRampToValueAtTime(0.001, this.next + 0.05);
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(this.next); osc.stop(this.next + 0.06);
      setTimeout(() => this.flash(), Math.max(0, (this.next - this.ctx.currentTime) * 1000));
      this.next += period;
    }
  },
  flash() {
    const b = document.getElementById("beat");
    b.textContent = "●";
    setTimeout(() => { b.textContent = ""; }, 80);
  },
};

document.getElementById("sound").addEventListener("click", () => metronome.enable());
document.getElementById("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen(); else document.documentElement.requestFullscreen();
});

link = connect(["state", "step"], (msg) => {
  if (msg.type === "step") onStep(msg);
  else if (msg.type === "state") onState(msg);
}, (up) => {
  if (!up) document.getElementById("status").textContent = "○ Station not reachable — reconnecting…";
});
