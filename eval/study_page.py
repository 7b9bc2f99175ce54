"""The user study's web page: one self-contained HTML file that shows the trials, takes the
votes (keys or taps) and saves them as a CSV; written by ``python -m eval.userstudy export``."""
from __future__ import annotations

import json


CSV_HEADER = ["observer", "session", "scene", "condition_1", "condition_2", "selection"]  # pwcmp
CSV_EXTRA = ["trial", "time", "response_ms", "screen"]
MIN_MS = 400  # votes sooner than this after both images show are ignored


def render_page(trials: list[dict], min_ms: int = MIN_MS) -> str:
    """The study page: one HTML file, inline script, images by relative path."""
    data = json.dumps(trials).replace("</", "<\\/")  # a scene name cannot close the script element
    return (_PAGE.replace("__TRIALS__", data).replace("__MIN_MS__", str(int(min_ms)))
            .replace("__HEADER__", json.dumps(CSV_HEADER + CSV_EXTRA)))


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Which image looks more realistic?</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;background:#222;color:#eee;text-align:center}
#pair{display:flex;gap:1em;justify-content:center;align-items:flex-start}
#pair figure{margin:0;flex:1;max-width:48vw}
#pair img{max-width:100%;max-height:78vh;cursor:pointer;border:3px solid transparent;touch-action:manipulation}
#pair.armed img:hover{border-color:#6af}
button{font-size:1.1em;margin:.4em;padding:.5em 1.2em;min-height:44px;min-width:44px}
input{font-size:1.1em;padding:.3em}
#start,#done{margin-top:3em}
@media (max-width:700px){#pair{flex-direction:column;align-items:center}#pair figure{max-width:100%;width:100%}
#pair img{width:100%;max-height:42vh;object-fit:contain}}
</style></head><body>
<div id="start"><h2>Which image looks more realistic?</h2>
<p>Each screen shows the same scene twice. Pick the image whose inserted object fits its
surroundings better: <span class="how"></span>.</p>
<p><label>Your name or id: <input id="observer" autocomplete="off"></label></p>
<button id="begin">Start</button></div>
<div id="study" hidden><p id="progress"></p>
<div id="pair"><figure><img id="left" alt="left"></figure><figure><img id="right" alt="right"></figure></div>
<button id="undo" disabled>Undo last choice</button></div>
<div id="done" hidden><h2>Thank you!</h2><p id="summary"></p>
<button id="download">Download votes (CSV)</button> <button id="next">Next participant</button></div>
<script>
const TRIALS = __TRIALS__;
const MIN_MS = __MIN_MS__;  // a vote sooner than this after both images show is ignored
const KEY = "harmony-study:" + location.pathname;
const TOUCH = window.matchMedia && matchMedia("(pointer: coarse)").matches;
document.querySelectorAll(".how").forEach(e => e.textContent = TOUCH ? "tap it" : "click it, or press \u2190 / \u2192");
let st = JSON.parse(localStorage.getItem(KEY) || "null");
let shownAt = null, busy = false;
function rnd(n){return Math.floor(Math.random()*n);}
function arrangeable(counts, firstNot){  // no scene twice in a row possible, first not firstNot?
  const v = Object.values(counts), r = v.reduce((a,b)=>a+b, 0);
  if (!r) return true;
  if (Math.max(...v) > Math.floor((r+1)/2)) return false;
  return !(r % 2 === 1 && (counts[firstNot]||0) === Math.floor((r+1)/2));
}
function order(){  // random order, sides random, no scene twice in a row where the scenes allow it
  const groups = {};
  for (const t of TRIALS) (groups[t.scene] = groups[t.scene] || []).push(rnd(2) ? {scene:t.scene,l:t.a,r:t.b} : {scene:t.scene,l:t.b,r:t.a});
  const out = []; let last = null;
  for (;;){
    const counts = {};
    for (const k in groups) if (groups[k].length) counts[k] = groups[k].length;
    const keys = Object.keys(counts);
    if (!keys.length) break;
    let ok = keys.filter(k => k !== last && arrangeable(Object.assign({}, counts, {[k]: counts[k]-1}), k));
    if (!ok.length) ok = keys.filter(k => k !== last);
    if (!ok.length) ok = keys;
    let x = rnd(ok.reduce((a,k)=>a+counts[k], 0)), pick = ok[0];
    for (const k of ok){ if (x < counts[k]) {pick = k; break;} x -= counts[k]; }
    const g = groups[pick];
    out.push(g.splice(rnd(g.length), 1)[0]); last = pick;
  }
  return out;
}
function save(){localStorage.setItem(KEY, JSON.stringify(st));}
function begin(){
  const obs = document.getElementById("observer").value.trim() || ("obs" + Math.random().toString(36).slice(2,8));
  st = {observer: obs, session: new Date().toISOString().replace(/[-:.TZ]/g,"").slice(0,14) + rnd(1e4).toString().padStart(4,"0"),
        order: order(), votes: []};
  save(); show();
}
function screenSize(){return innerWidth + "x" + innerHeight + "/" + screen.width + "x" + screen.height;}
function show(){
  document.getElementById("start").hidden = true;
  document.getElementById("undo").disabled = !st.votes.length;
  if (st.votes.length >= st.order.length){
    document.getElementById("study").hidden = true; document.getElementById("done").hidden = false;
    document.getElementById("summary").textContent = st.votes.length + " choices recorded for " + st.observer + ".";
    return;
  }
  document.getElementById("done").hidden = true;
  const t = st.order[st.votes.length];
  document.getElementById("study").hidden = false;
  document.getElementById("progress").textContent = "Which image looks more realistic? (" +
    (TOUCH ? "tap it" : "click it, or \u2190 / \u2192") + ")  \u2014  " + (st.votes.length+1) + " / " + st.order.length;
  const L = document.getElementById("left"), R = document.getElementById("right");
  document.getElementById("pair").classList.remove("armed");  // no hover border left from the last trial
  shownAt = null; busy = false;
  let loaded = 0;
  const ready = () => {if (++loaded === 2) shownAt = performance.now();};
  for (const [img, c] of [[L, t.l], [R, t.r]]){
    img.onload = ready; img.dataset.cond = c; img.src = "images/" + c + ".jpg";
    if (img.complete && img.naturalWidth) {img.onload = null; ready();}
  }
}
function choose(sel){
  if (!st || st.votes.length >= st.order.length || busy || shownAt === null) return;
  const rt = performance.now() - shownAt;
  if (rt < MIN_MS) return;
  busy = true;  // one vote per trial
  const t = st.order[st.votes.length];
  st.votes.push([st.observer, st.session, t.scene, t.l, t.r, sel, st.votes.length, new Date().toISOString(),
                 Math.round(rt), screenSize()]);
  save(); show();
}
function undo(){
  if (!st || !st.votes.length) return;
  st.votes.pop(); save(); show();
}
function csv(){
  const q = v => /[",\n]/.test(String(v)) ? '"' + String(v).replace(/"/g,'""') + '"' : String(v);
  const rows = [__HEADER__].concat(st.votes);
  return rows.map(r=>r.map(q).join(",")).join("\n") + "\n";
}
function download(){
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([csv()], {type:"text/csv"}));
  a.download = "votes_" + st.observer.replace(/[^A-Za-z0-9_-]/g,"_") + "_" + st.session + ".csv";
  document.body.appendChild(a); a.click(); a.remove();
}
function nextParticipant(){
  download();
  localStorage.removeItem(KEY); st = null;
  document.getElementById("done").hidden = true; document.getElementById("study").hidden = true;
  document.getElementById("observer").value = ""; document.getElementById("start").hidden = false;
}
document.getElementById("begin").onclick = begin;
document.getElementById("left").onclick = () => choose(1);
document.getElementById("right").onclick = () => choose(2);
document.getElementById("undo").onclick = undo;
document.getElementById("download").onclick = download;
document.getElementById("next").onclick = nextParticipant;
document.getElementById("pair").addEventListener("mousemove", () => document.getElementById("pair").classList.add("armed"));
document.addEventListener("keydown", e => {
  if (e.repeat) return;  // a held key casts nothing more
  const starting = !document.getElementById("start").hidden;
  if (starting) {if (e.key === "Enter") begin(); return;}
  if (e.key === "ArrowLeft") choose(1);
  else if (e.key === "ArrowRight") choose(2);
  else if (e.key === "Backspace") {e.preventDefault(); undo();}
});
if (st) show();
</script></body></html>
"""


# ---- analysis ----------------------------------------------------------------------------------
