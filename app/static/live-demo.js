// /live-demo's script (served as /live-demo.js: the page's CSP allows no inline script).
"use strict";
const $ = (id) => document.getElementById(id);
let points = [], lastId = null, controller = null;
function headers() { const k = $("key").value.trim(); return k ? {"X-API-Key": k} : {}; }
function setStatus(s) { $("status").textContent = s; $("status").className = s; }
function draw() {
  if (!points.length) { $("line").setAttribute("points", ""); return; }
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
  let lo = Math.min(...points.map(p => p[1])), hi = Math.max(...points.map(p => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  $("line").setAttribute("points", points.map(([t, v]) =>
    ((t - t0) / (t1 - t0) * 960).toFixed(1) + "," + (310 - (v - lo) / (hi - lo) * 300).toFixed(1)).join(" "));
  $("ymax").textContent = hi.toFixed(0) + " W"; $("ymin").textContent = lo.toFixed(0) + " W";
}
function onEvent(type, data, id) {
  if (id) lastId = id;
  if (type === "status") { setStatus(JSON.parse(data).upstream); return; }
  if (type !== "readings") return;
  const ev = JSON.parse(data);
  for (const r of ev.items) if (r.quantity === "power") {
    points.push([Date.parse(r.time), r.value]); $("latest").textContent = r.value + " W at " + r.time;
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
      const url = "/readings/live?quantity=power&meter_id=" + encodeURIComponent(meter) + "&since=" + since;
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
  const res = await fetch("/meters?backend=iometer&limit=100", {headers: headers()});
  if (!res.ok) { setStatus("error"); $("latest").textContent = "meters: " + res.status; return; }
  const body = await res.json();
  $("meter").innerHTML = "";
  for (const m of body.items) {
    const o = document.createElement("option"); o.value = o.textContent = m.id; $("meter").append(o);
  }
  if (body.items.length && !controller) $("go").click();
}
$("go").onclick = () => { points = []; lastId = null; draw(); stream($("meter").value); };
$("key").onchange = loadMeters;
loadMeters();
