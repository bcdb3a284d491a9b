// /live-demo's script (served as /live-demo.js: the page's CSP allows no inline script).
"use strict";
const $ = (id) => document.getElementById(id);
let points = [], lastId = null, controller = null, plotted = null, unit = "";
function headers() { const k = $("key").value.trim(); return k ? {"X-API-Key": k} : {}; }
function setStatus(s) { $("status").textContent = s; $("status").className = s; }
const STEPS = [60e3, 300e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3];
function timeAxis(t0, t1) {
  // ticks at whole local minutes/hours, at most 8, each a vertical grid line and an HH:MM label
  const g = $("xaxis"); g.replaceChildren();
  const step = STEPS.find(s => (t1 - t0) / s <= 8) || 86400e3;
  const offset = new Date(t0).getTimezoneOffset() * 60e3;
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) {
    const x = ((t - t0) / (t1 - t0) * 960).toFixed(1), ns = $("plot").namespaceURI;
    const tick = document.createElementNS(ns, "line");
    for (const [k, v] of [["x1", x], ["x2", x], ["y1", 0], ["y2", 288]]) tick.setAttribute(k, v);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x); label.setAttribute("y", 302); label.setAttribute("stroke", "none");
    label.setAttribute("text-anchor", "middle"); label.setAttribute("class", "tick");
    label.textContent = new Date(t).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
    g.append(tick, label);
  }
}
function draw() {
  if (!points.length) { $("line").setAttribute("points", ""); $("xaxis").replaceChildren(); return; }
  points.sort((a, b) => a[0] - b[0]);
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 60e3);
  let lo = Math.min(...points.map(p => p[1])), hi = Math.max(...points.map(p => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  // x is time (not the point's index), so gaps and uneven instants show as they are
  $("line").setAttribute("points", points.map(([t, v]) =>
    ((t - t0) / (t1 - t0) * 960).toFixed(1) + "," + (280 - (v - lo) / (hi - lo) * 260).toFixed(1)).join(" "));
  $("ymax").textContent = hi.toFixed(0) + " " + unit; $("ymin").textContent = lo.toFixed(0) + " " + unit;
  timeAxis(t0, t1);
}
function onEvent(type, data, id) {
  if (id) lastId = id;
  if (type === "status") { setStatus(JSON.parse(data).upstream); return; }
  if (type !== "readings") return;
  const ev = JSON.parse(data);
  // power where the meter streams it (IOmeter), else the first register it streams (Waltero, ...)
  if (!plotted) plotted = (ev.items.find(r => r.quantity === "power") || ev.items[0] || {}).quantity;
  for (const r of ev.items) if (r.quantity === plotted) {
    unit = r.unit || ""; points.push([Date.parse(r.time), r.value]);
    $("latest").textContent = r.value + " " + unit + " at " + r.time;
  }
  if (points.length > 2000) points = points.slice(-2000);
  setStatus("live"); draw();
}
async function stream(meter) {
  if (controller) controller.abort();
  controller = new AbortController();
  const since = new Date(Date.now() - 6 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  while (true) {
    const h = headers(); if (lastId) h["Last-Event-ID"] = lastId;
    try {
      const url = "/readings/live?meter_id=" + encodeURIComponent(meter) + "&since=" + since;
      const res = await fetch(url, {headers: h, signal: controller.signal});
      if (!res.ok) { setStatus("error"); $("latest").textContent = res.status + " " + await res.text(); return; }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let type = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
            else if (line.startsWith("id: ")) id = line.slice(4);
          }
          if (data) onEvent(type, data, id);
        }
      }
    } catch (e) { if (e.name === "AbortError") return; }
    setStatus("reconnecting"); await new Promise(r => setTimeout(r, 3000));
  }
}
async function loadMeters() {
  const res = await fetch("/meters?limit=100", {headers: headers()});
  if (!res.ok) { setStatus("error"); $("latest").textContent = "meters: " + res.status; return; }
  const body = await res.json();
  $("meter").innerHTML = "";
  for (const m of body.items) {
    const o = document.createElement("option"); o.value = o.textContent = m.id; $("meter").append(o);
  }
  if (body.items.length && !controller) $("go").click();
}
$("go").onclick = () => { points = []; lastId = null; plotted = null; draw(); stream($("meter").value); };
$("key").onchange = loadMeters;
loadMeters();
