// treadlab station: what both pages share. No build step, no external script.
"use strict";

// HTTP API call: JSON in, JSON out; rejects with the station's one-line error.
async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    throw new Error((data && data.error) || (resp.status + " " + resp.statusText));
  }
  return data;
}

// WebSocket to /ws with reconnection (0.5 s doubling to 5 s). onMessage(msg, socket);
// onStatus(connected: bool).
function connect(streams, onMessage, onStatus) {
  let delay = 500;
  let socket = null;
  let last = Date.now();
  // the station sends its state twice a second: 5 s of silence means a dead link, reconnect
  setInterval(() => {
    if (socket && socket.readyState === 1 && Date.now() - last > 5000) socket.close();
  }, 1000);
  function open() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(proto + "//" + location.host + "/ws?streams=" + streams.join(","));
    socket.onopen = () => { delay = 500; last = Date.now(); if (onStatus) onStatus(true); };
    socket.onmessage = (ev) => {
      last = Date.now();
      window.__lastMessage = last;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onMessage(msg, socket);
    };
    socket.onclose = () => {
      if (onStatus) onStatus(false);
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 5000);
    };
  }
  open();
  return { send: (obj) => { if (socket && socket.readyState === 1) socket.send(JSON.stringify(obj)); } };
}

function fmt(v, digits, unit) {
  if (v === null || v === undefined || !isFinite(v)) return "--";
  return Number(v).toFixed(digits) + (unit ? " " + unit : "");
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// A small line plot on a canvas: series = [{values, label, dash}], y range [lo, hi].
function drawLines(canvas, series, lo, hi, yLabel) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  const left = 48, bottom = 18, top = 8;
  ctx.strokeStyle = "#bbb"; ctx.lineWidth = 1; ctx.font = "12px sans-serif"; ctx.fillStyle = "#333";
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(String(Math.round(hi - (hi - lo) * i / 4)), 2, y + 4);
  }
  ctx.fillText(yLabel, left + 4, h - 4);
  const colours = ["#1b5e9e", "#c2410c", "#2e7d32"];
  series.forEach((s, k) => {
    const n = s.values.length;
    if (n < 2) return;
    ctx.strokeStyle = colours[k % colours.length];
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    for (let i = 0; i < n; i++) {
      const x = left + (w - left) * i / (s.max || n);
      const v = Math.max(lo, Math.min(hi, s.values[i]));
      const y = top + (h - top - bottom) * (hi - v) / (hi - lo);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.stroke();
    ctx.setLineDash([]);
    // legend: a white box, the line style and the name (dashes tell the series apart too)
    const lx = w - 150, ly = 6 + 18 * k;
    ctx.fillStyle = "rgba(255,255,255,0.9)"; ctx.fillRect(lx - 4, ly, 150, 18);
    ctx.strokeStyle = colours[k % colours.length]; ctx.setLineDash(s.dash || []);
    ctx.beginPath(); ctx.moveTo(lx, ly + 9); ctx.lineTo(lx + 28, ly + 9); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#111";
    ctx.fillText(s.label, lx + 34, ly + 13);
  });
}
