// treadlab station: the technician console.
"use strict";

const CUES = {
  pelvic_drop: "Pelvic drop (°)", trunk_lean: "Trunk lean (°)",
  heel_lead: "Heel ahead of pelvis (mm)", hip_extension: "Hip extension (°)",
  cadence: "Cadence (steps/min)", contact_time: "Contact time (s)",
};
const CAUSES = ["pelvic_drop", "upright_trunk", "overstride", "limited_hip_extension"];
const PLOT_N = 500;            // 5 s at 100 Hz
const plot = { force: [], visibility: [], plates: [] };
let state = null;
let feedbackLoaded = false;

function showError(text) {
  const p = document.getElementById("error");
  p.textContent = text ? "⚠ " + text : "";
  p.hidden = !text;
}

async function call(method, path, body) {
  try {
    const out = await api(method, path, body);
    showError("");
    return out;
  } catch (e) {
    showError(e.message);
    return null;
  }
}

// --- rendering ---------------------------------------------------------------------------
function renderDevices(health) {
  const box = document.getElementById("devices");
  box.replaceChildren();
  for (const h of Object.values(health)) {
    const ok = h.healthy;
    const card = el("div", { class: "device " + (ok ? "ok" : "bad"), id: "device-" + h.name,
                             "data-healthy": String(ok) });
    card.append(el("h3", { text: (ok ? "✓ " : "✗ ") + h.name + (ok ? ": OK" : ": PROBLEM") }));
    if (!ok) card.append(el("p", { class: "why", text: h.why }));
    const rows = [
      ["where", h.where], ["connected", h.connected ? "yes" : "no"],
      ["rate", fmt(h.rate_hz, 0, "Hz") + " of " + fmt(h.nominal_hz, 0, "Hz")],
      ["drops", h.drops + " (last 5 s: " + h.drops_recent + ")"],
      ["reconnects", String(h.reconnects)],
      ["clock offset", fmt(h.clock_offset_s, 4, "s")],
      ["clock drift", fmt(h.clock_drift_ppm, 1, "ppm")],
    ];
    if (h.name === "belt") {
      rows.push(["belt speed L/R", (h.speed_m_s || []).map((v) => fmt(v, 2)).join(" / ") + " m/s"]);
      rows.push(["max / accel", fmt(h.max_speed_m_s, 1, "m/s") + ", " + fmt(h.accel_m_s2, 2, "m/s²")]);
    }
    if (h.channels) rows.push(["channels", h.channels.map((c, i) => c + " (" + (h.units || [])[i] + ")").join(", ")]);
    if (h.name === "force") {
      rows.push(["tared", h.tared ? "yes" : "no"]);
      rows.push(["zero (counts)", (h.zero_counts || []).map((z) => z.toFixed(0)).join(" ")]);
      rows.push(["load now (N)", (h.load_n || []).map((z) => z.toFixed(0)).join(" / ")]);
    }
    const dl = el("dl");
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    card.append(dl);
    box.append(card);
  }
}

function renderRunner(r) {
  document.getElementById("runner-now").textContent = r
    ? "Runner " + r.id + ": " + fmt(r.body_mass_kg, 1, "kg") + ", leg length " + fmt(r.leg_length_mm, 0, "mm")
    : "No runner registered.";
}

function renderTrial(s) {
  const t = s.trial;
  const bad = Object.values(s.health || {}).filter((h) => !h.healthy);
  const gate = document.getElementById("gate");
  const start = document.getElementById("trial-start");
  const stop = document.getElementById("trial-stop");
  let why = "";
  if (!s.runner) why = "Register a runner before the first trial.";
  else if (bad.length) why = "Cannot start: " + bad.map((h) => h.name + ": " + h.why).join("; ");
  gate.textContent = why ? "⚠ " + why : "";
  gate.hidden = !why;
  const hint = document.getElementById("hint");
  const hasStatic = s.runner && (s.runner.static || (s.trials || []).some(
    (x) => x.runner === s.runner.id && x.kind === "static" && x.calibration));
  hint.textContent = s.runner && !hasStatic ? "Next: a static trial (standing still), then the running trials." : "";
  hint.hidden = !hint.textContent;
  start.disabled = Boolean(t) || Boolean(why);
  stop.disabled = !t;
  document.getElementById("trial-now").textContent = t
    ? "● RECORDING " + t.id + " — " + t.kind + (t.kind === "running" ? " at " + t.speed_m_s + " m/s" : "")
      + ", " + fmt(t.elapsed_s, 0, "s") + (t.duration_s ? " of " + fmt(t.duration_s, 0, "s") : "")
      + (t.kind === "running" ? ", " + t.steps + " steps" : "")
      + (t.belt_m_s !== undefined && t.belt_m_s !== null ? ", belt " + fmt(t.belt_m_s, 2, "m/s") : "")
      + (t.stage ? " — stage " + t.stage.n + "/" + t.stage.of + " " + t.stage.speed_m_s + " m/s, "
                   + fmt(t.stage.left_s, 0, "s") + " left" : "")
    : "No trial recording.";
}

function renderTrials(trials) {
  const body = document.querySelector("#trials tbody");
  body.replaceChildren();
  for (const t of trials) {
    const tr = el("tr", { "data-id": t.id, "data-status": t.status, "data-processing": t.processing });
    const status = t.status === "interrupted" ? "⚠ interrupted (recovered)" : t.status;
    const cells = [t.id, t.kind, t.kind === "running" ? fmt(t.speed_m_s, 1, "m/s") : "--",
                   fmt(t.recorded_s, 1, "s"), status, t.processing + (t.error ? ": " + t.error : "")];
    for (const c of cells) tr.append(el("td", { text: c }));
    if (t.kind === "static") {
      // a static trial is a calibration: its standing values, not cause scores
      const c = t.calibration;
      tr.append(el("td", { class: "calibration", colspan: String(CAUSES.length),
        text: c ? "calibrated: pelvic obliquity " + fmt(c.pelvic_obliquity_deg, 1, "°")
                  + ", tilt " + fmt(c.pelvic_tilt_deg, 1, "°") + ", leg length L/R "
                  + fmt(c.leg_length_left_mm, 0) + "/" + fmt(c.leg_length_right_mm, 0, "mm")
                  + ", inter-ASIS " + fmt(c.inter_asis_mm, 0, "mm")
                : (t.processing === "failed" ? "not calibrated" : "--") }));
    } else {
      for (const cause of CAUSES) {
        const v = t.scores ? t.scores[cause] : null;
        const why = t.score_status ? t.score_status[cause] : "";
        const td = el("td", { class: "score", "data-cause": cause, title: why || "",
                              text: v === null || v === undefined
                                ? (t.scores ? "not scored" + (why ? ": " + why : "") : "--")
                                : v.toFixed(0) });
        tr.append(td);
      }
    }
    // a speed protocol: the cause scores of each speed plateau (docs/scoring.md)
    const by = t.scores_by_speed;
    const bys = el("td", { class: "by-speed" });
    if (by && Object.keys(by).length) {
      for (const [v, sc] of Object.entries(by)) {
        bys.append(el("div", { class: "plateau", "data-speed": v, text: v + " m/s: " + CAUSES.map(
          (c) => (sc[c] === null || sc[c] === undefined ? "--" : sc[c].toFixed(0))).join(" / ") }));
      }
    } else bys.textContent = t.protocol ? "protocol " + t.protocol : "--";
    tr.append(bys);
    const lat = t.feedback_latency;
    tr.append(el("td", { text: lat && lat.dom_p50_ms !== null
      ? "p50 " + fmt(lat.dom_p50_ms, 1) + " / p99 " + fmt(lat.dom_p99_ms, 1) + " ms" : "--" }));
    const td = el("td");
    if (t.report) td.append(el("a", { href: t.report, target: "_blank", class: "report", text: "report" }));
    else td.textContent = "--";
    tr.append(td);
    body.append(tr);
  }
}

function renderEvents(events) {
  const ol = document.getElementById("events");
  ol.replaceChildren();
  for (const [t, src, kind, detail] of events.slice().reverse()) {
    ol.append(el("li", { text: fmt(t, 1, "s") + "  " + src + " " + kind + ": " + detail }));
  }
}

function renderFeedback(fb) {
  const box = document.getElementById("cue-choice");
  box.querySelectorAll("label").forEach((n) => n.remove());
  const bands = document.getElementById("bands");
  bands.replaceChildren();
  for (const [name, label] of Object.entries(CUES)) {
    const cb = el("input", { type: "checkbox", value: name, id: "cue-" + name });
    cb.checked = fb.cues.includes(name);
    box.append(el("label", {}, cb, " " + label));
    const [lo, hi] = fb.bands[name];
    bands.append(el("label", { class: "band" }, label + " target ",
      el("input", { type: "number", step: "any", id: "lo-" + name, value: String(lo) }), " to ",
      el("input", { type: "number", step: "any", id: "hi-" + name, value: String(hi) })));
  }
  document.getElementById("fb-window").value = fb.window;
  document.getElementById("fb-fading").value = fb.fading;
  document.getElementById("fb-metronome").checked = fb.metronome;
  document.getElementById("fb-spm").value = fb.metronome_spm;
}

function render(s) {
  state = s;
  document.getElementById("lab").textContent = s.station.lab;
  document.getElementById("sim").hidden = !s.station.simulated;
  renderDevices(s.health || {});
  renderRunner(s.runner);
  renderTrial(s);
  renderTrials(s.trials || []);
  renderEvents(s.events || []);
  if (!feedbackLoaded) { renderFeedback(s.feedback); feedbackLoaded = true; }
}

function drawPlots() {
  const series = plot.plates.map((name, k) => ({
    label: name + " Fz", values: plot.force.map((row) => row[k]), max: PLOT_N, dash: k ? [6, 3] : [],
  }));
  let hi = 500;
  for (const row of plot.force) for (const v of row) hi = Math.max(hi, v);
  drawLines(document.getElementById("force-plot"), series, 0, Math.ceil(hi / 500) * 500, "vertical force (N)");
  drawLines(document.getElementById("vis-plot"),
            [{ label: "visible markers", values: plot.visibility.map((v) => 100 * v), max: PLOT_N }],
            0, 100, "markers visible (%)");
}

// --- actions -----------------------------------------------------------------------------
document.getElementById("runner-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  await call("POST", "/api/runner", {
    id: document.getElementById("runner-id").value.trim(),
    body_mass_kg: Number(document.getElementById("runner-mass").value),
    leg_length_mm: Number(document.getElementById("runner-leg").value),
  });
});

document.getElementById("trial-kind").addEventListener("change", (ev) => {
  document.getElementById("trial-speed").disabled = ev.target.value === "static";
  document.getElementById("trial-protocol").disabled = ev.target.value === "static";
});
document.getElementById("trial-speed").disabled = true;
document.getElementById("trial-protocol").disabled = true;

document.getElementById("trial-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const kind = document.getElementById("trial-kind").value;
  const body = { kind, note: document.getElementById("trial-note").value };
  const dur = document.getElementById("trial-duration").value;
  if (dur !== "") body.duration_s = Number(dur);
  const protocol = document.getElementById("trial-protocol").value.trim();
  // a protocol sets the speeds (and, with no duration, the length): the speed field is not sent
  if (kind === "running" && protocol) body.protocol = protocol;
  else if (kind === "running") body.speed_m_s = Number(document.getElementById("trial-speed").value);
  await call("POST", "/api/trials", body);
});

document.getElementById("trial-stop").addEventListener("click", () => call("POST", "/api/trials/stop"));
document.getElementById("tare").addEventListener("click", () => call("POST", "/api/tare"));

document.getElementById("feedback-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const cues = Object.keys(CUES).filter((n) => document.getElementById("cue-" + n).checked);
  const bands = {};
  for (const n of Object.keys(CUES)) {
    bands[n] = [Number(document.getElementById("lo-" + n).value), Number(document.getElementById("hi-" + n).value)];
  }
  const fb = await call("PUT", "/api/feedback", {
    cues, bands,
    window: Number(document.getElementById("fb-window").value),
    fading: document.getElementById("fb-fading").value,
    metronome: document.getElementById("fb-metronome").checked,
    metronome_spm: Number(document.getElementById("fb-spm").value),
  });
  if (fb) renderFeedback(fb);
});

connect(["state", "plot"], (msg) => {
  if (msg.type === "state") render(msg);
  else if (msg.type === "plot") {
    plot.plates = msg.plates;
    plot.force.push(...msg.force);
    plot.visibility.push(...msg.visibility);
    if (plot.force.length > PLOT_N) plot.force.splice(0, plot.force.length - PLOT_N);
    if (plot.visibility.length > PLOT_N) plot.visibility.splice(0, plot.visibility.length - PLOT_N);
  }
}, (up) => {
  const b = document.getElementById("link");
  b.textContent = up ? "● connected" : "○ disconnected — reconnecting";
  b.className = "badge " + (up ? "ok" : "bad");
});
setInterval(drawPlots, 200);
