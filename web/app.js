// The page: inputs, settings and results. The model runs in a Web Worker (the `web` crate's
// `worker` binary, wasm32); this file only fetches model files (with progress, sha256 checks and
// the Cache API), reads pictures and video frames, and shows what the worker answers.
// Plain JavaScript, no framework, no request outside this page's origin.

const CACHE_NAME = "caption-models-v1";
const DEFAULT_MODEL = "model/";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const backendParam = params.get("backend") || "cpu";

let worker = null;
let workerReady = null;
let nextId = 1;
const pending = new Map(); // id -> {resolve, reject, onPartial}
let loadedFiles = null; // the model's three files, to reload after a worker crash
let maxFrames = 8;
let busy = false;
let lastInput = null; // {kind, bytes} of the latest captioned input (test hook)

// ---------- worker ----------

function startWorker() {
  worker = new Worker("./worker_loader.js");
  workerReady = new Promise((resolve) => {
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.type === "ready") return resolve();
      if (m.type === "fatal") return crashed(m.message);
      const p = pending.get(m.id);
      if (!p) return;
      if (m.type === "partial") return p.onPartial && p.onPartial(m.text);
      pending.delete(m.id);
      if (m.type === "error") p.reject(new Error(m.message));
      else p.resolve(m);
    };
  });
  worker.onerror = (e) => {
    e.preventDefault();
    crashed(e.message || "unknown error");
  };
}

function crashed(message) {
  const oom = /memory|unreachable|allocation/i.test(message);
  const words = oom
    ? "The captioning engine ran out of memory. It is being restarted; try a smaller picture or model."
    : `The captioning engine stopped (${message}). It is being restarted.`;
  for (const p of pending.values()) p.reject(new Error(words));
  pending.clear();
  worker.terminate();
  startWorker();
  if (loadedFiles) {
    sendLoad(loadedFiles).catch((e) => showError(e.message));
  }
}

async function ask(message, transfer = [], onPartial = null) {
  await workerReady;
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onPartial });
    worker.postMessage({ ...message, id }, transfer);
  });
}

// ---------- model files: fetch with progress, sha256, Cache API ----------

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(bytes) {
  if (!crypto.subtle) return null; // not a secure context: the worker still checks every file
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

async function openCache() {
  try {
    return "caches" in self ? await caches.open(CACHE_NAME) : null;
  } catch {
    return null;
  }
}

function mb(n) {
  return (n / 1e6).toFixed(1);
}

function progress(done, total, what) {
  const bar = $("progress");
  bar.hidden = false;
  bar.max = total || 1;
  bar.value = done;
  $("model-status").textContent = `${what}: ${mb(done)} of ${mb(total)} MB`;
}

async function download(url, expected, onBytes) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (e) {
    throw new Error(`Could not download ${url}: the network is unavailable (${e.message}).`);
  }
  if (!response.ok) throw new Error(`Could not download ${url}: the server answered ${response.status}.`);
  const reader = response.body.getReader();
  const out = new Uint8Array(expected);
  let at = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.length > expected) throw new Error(`${url} is larger than its manifest says (${expected} bytes).`);
    out.set(value, at);
    at += value.length;
    onBytes(value.length);
  }
  if (at !== expected) throw new Error(`${url} is incomplete: ${at} of ${expected} bytes arrived.`);
  return out;
}

function checkManifest(bytes) {
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error("This is not a model folder: its manifest.json is not valid JSON.");
  }
  if (manifest.format !== "caption-model-folder" || !Array.isArray(manifest.files)) {
    throw new Error("This is not a model folder: manifest.json is not a caption-model-folder manifest.");
  }
  return manifest;
}

// Fetches manifest.json, model.safetensors and the tokenizer of the folder at `base`; the files
// are kept in the Cache API under their checksum, so a later visit downloads only the manifest
// (and nothing at all when offline).
async function fetchModel(base) {
  const cache = await openCache();
  const manifestUrl = new URL("manifest.json", base).href;
  let manifestBytes;
  let offline = false;
  try {
    const r = await fetch(manifestUrl, { cache: "no-store" });
    if (!r.ok) throw new Error(`the server answered ${r.status}`);
    manifestBytes = new Uint8Array(await r.arrayBuffer());
    if (cache) await cache.put(manifestUrl, new Response(manifestBytes.slice()));
  } catch (e) {
    const hit = cache && (await cache.match(manifestUrl));
    if (!hit) throw new Error(`Could not get the model's manifest.json from ${manifestUrl} (${e.message}).`);
    manifestBytes = new Uint8Array(await hit.arrayBuffer());
    offline = true;
  }
  const manifest = checkManifest(manifestBytes);
  const names = ["model.safetensors", manifest.tokenizer || "tokenizer.json"];
  const entries = names.map((n) => {
    const e = manifest.files.find((f) => f.name === n);
    if (!e) throw new Error(`The model's manifest.json does not list ${n}.`);
    return e;
  });
  const total = entries.reduce((s, e) => s + e.bytes, 0);
  let done = 0;
  const sources = [];
  const files = [];
  for (const e of entries) {
    const url = new URL(e.name, base).href;
    const key = `${url}?sha256=${e.sha256}`;
    let bytes = null;
    const hit = cache && (await cache.match(key));
    if (hit) {
      bytes = new Uint8Array(await hit.arrayBuffer());
      const sum = await sha256(bytes);
      if (bytes.length !== e.bytes || (sum && sum !== e.sha256)) {
        await cache.delete(key); // a damaged copy: fetch it again
        bytes = null;
      } else {
        sources.push("cache");
        done += e.bytes;
        progress(done, total, "Reading the model from this browser's cache");
      }
    }
    if (!bytes) {
      bytes = await download(url, e.bytes, (n) => {
        done += n;
        progress(done, total, "Downloading the model");
      });
      const sum = await sha256(bytes);
      if (sum && sum !== e.sha256) {
        throw new Error(`The model file ${e.name} is damaged: its checksum does not match the manifest. Nothing was loaded.`);
      }
      sources.push("network");
      if (cache) {
        // Old versions of this file (other checksums) are dropped.
        for (const old of await cache.keys()) {
          if (old.url.startsWith(`${url}?sha256=`) && old.url !== key) await cache.delete(old);
        }
        await cache.put(key, new Response(bytes.slice()));
      }
    }
    files.push(bytes);
  }
  const source = sources.every((s) => s === "cache") ? "cache" : "network";
  return { manifest: manifestBytes, model: files[0], tokenizer: files[1], source, offline };
}

async function readLocalFolder(fileList) {
  const byName = new Map();
  for (const f of fileList) byName.set(f.name, f);
  const mf = byName.get("manifest.json");
  if (!mf) throw new Error("That folder has no manifest.json: pick a folder made by `native export`.");
  const manifestBytes = new Uint8Array(await mf.arrayBuffer());
  const manifest = checkManifest(manifestBytes);
  const out = [];
  for (const n of ["model.safetensors", manifest.tokenizer || "tokenizer.json"]) {
    const f = byName.get(n);
    if (!f) throw new Error(`That folder has no ${n}.`);
    out.push(new Uint8Array(await f.arrayBuffer()));
  }
  return { manifest: manifestBytes, model: out[0], tokenizer: out[1], source: "local folder" };
}

async function sendLoad(files) {
  // Copies are sent so that the page keeps its own (for a restart after a crash).
  const m = await ask({
    type: "load",
    backend: backendParam,
    manifest: files.manifest.slice(),
    model: files.model.slice(),
    tokenizer: files.tokenizer.slice(),
  });
  return m;
}

async function loadModel(getFiles, label) {
  setBusy(true);
  document.body.dataset.state = "loading";
  hideError();
  try {
    const files = await getFiles();
    $("model-status").textContent = "Preparing the model…";
    const m = await sendLoad(files);
    loadedFiles = files;
    maxFrames = m.maxFrames;
    $("frames").max = String(maxFrames);
    if (Number($("frames").value) > maxFrames) $("frames").value = String(maxFrames);
    $("progress").hidden = true;
    const from = files.source === "cache" ? "from this browser's cache" : `from the ${files.source}`;
    $("model-status").textContent = `Model ${label} loaded ${from}${files.offline ? " (offline)" : ""}: ${m.summary}. Engine: ${m.backend}.`;
    $("model-status").dataset.source = files.source;
    if (m.notice) {
      $("notice").hidden = false;
      $("notice").textContent = m.notice;
    }
    document.body.dataset.state = "ready";
  } catch (e) {
    $("progress").hidden = true;
    $("model-status").textContent = loadedFiles ? "The previous model is still loaded." : "No model is loaded.";
    document.body.dataset.state = loadedFiles ? "ready" : "no-model";
    showError(e.message);
  } finally {
    setBusy(false);
  }
}

// ---------- captioning ----------

function settings() {
  return JSON.stringify({
    strategy: $("strategy").value,
    beamWidth: Number($("beam-width").value),
    temperature: Number($("temperature").value),
    topP: Number($("top-p").value),
    maxLength: Number($("max-length").value),
    seed: Math.floor(Math.random() * 1e9),
  });
}

function setBusy(b) {
  busy = b;
  for (const id of ["scene", "snap", "camera"]) $(id).disabled = b;
  document.body.dataset.busy = b ? "1" : "";
}

function showError(message) {
  $("error").hidden = false;
  $("error").textContent = message;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function runCaption(message, transfer) {
  if (!loadedFiles) return showError("No model is loaded yet.");
  if (busy) return showError("Still working on the previous caption; try again in a moment.");
  setBusy(true);
  hideError();
  const cap = $("caption");
  cap.dataset.state = "running";
  cap.textContent = "…";
  $("timing").textContent = "";
  $("copy").disabled = true;
  try {
    const m = await ask({ ...message, type: "caption", settings: settings() }, transfer, (text) => {
      cap.textContent = text || "…";
    });
    cap.textContent = m.caption;
    cap.dataset.tokens = Array.from(m.ids).join(",");
    cap.dataset.state = "done";
    const what = m.frames > 1 ? `${m.frames} video frames` : "one picture";
    $("timing").textContent = `${Math.round(m.ms)} ms for ${what}, ${m.tokens} tokens, on ${m.backend}`;
    $("timing").dataset.ms = String(m.ms);
    $("copy").disabled = false;
    return m;
  } catch (e) {
    cap.dataset.state = "error";
    cap.textContent = "";
    showError(e.message);
  } finally {
    setBusy(false);
  }
}

function showPicture(bytes, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type: type || "" }));
  const img = document.createElement("img");
  img.alt = "The picture being captioned";
  img.src = url;
  img.onerror = () => img.replaceWith(document.createTextNode("(this browser cannot show the file)"));
  $("preview").replaceChildren(img);
}

async function captionImageBytes(bytes, type) {
  $("scene-description").hidden = true;
  lastInput = { kind: "image", bytes: bytes.slice() };
  showPicture(bytes, type);
  return runCaption({ image: bytes }, [bytes.buffer]);
}

async function captionFile(file) {
  if (!file) return;
  if (file.type.startsWith("video/")) return captionVideo(file);
  if (file.type && !file.type.startsWith("image/")) {
    return showError(`“${file.name}” is not a picture or a video (${file.type}).`);
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  return captionImageBytes(bytes, file.type);
}

// Frames sampled evenly over the clip (the middle of each of N equal spans), drawn at most
// 640 px wide, as RGBA.
async function videoFrames(file, count) {
  const url = URL.createObjectURL(file);
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.src = url;
  video.controls = true;
  $("preview").replaceChildren(video);
  const failed = () => new Error(`“${file.name}” could not be decoded as a video by this browser.`);
  await new Promise((resolve, reject) => {
    video.onloadeddata = resolve;
    video.onerror = () => reject(failed());
  });
  const duration = video.duration;
  if (!Number.isFinite(duration) || duration <= 0 || !video.videoWidth) throw failed();
  const scale = Math.min(1, 640 / video.videoWidth);
  const width = Math.max(1, Math.round(video.videoWidth * scale));
  const height = Math.max(1, Math.round(video.videoHeight * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const frames = [];
  for (let i = 0; i < count; i++) {
    const t = ((i + 0.5) * duration) / count;
    await new Promise((resolve, reject) => {
      video.onseeked = resolve;
      video.onerror = () => reject(failed());
      video.currentTime = t;
    });
    ctx.drawImage(video, 0, 0, width, height);
    frames.push(new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer));
  }
  return { frames, width, height };
}

async function captionVideo(file) {
  if (!loadedFiles) return showError("No model is loaded yet.");
  $("scene-description").hidden = true;
  hideError();
  const count = Math.max(1, Math.min(maxFrames, Number($("frames").value) || 8));
  let v;
  try {
    v = await videoFrames(file, count);
  } catch (e) {
    $("caption").dataset.state = "error";
    return showError(e.message);
  }
  lastInput = { kind: "video" };
  return runCaption(
    { frames: v.frames, width: v.width, height: v.height },
    v.frames.map((f) => f.buffer),
  );
}

async function randomScene() {
  const seed = Math.floor(Math.random() * 2 ** 32);
  const m = await ask({ type: "scene", seed });
  const d = $("scene-description");
  d.hidden = false;
  d.textContent = `Scene #${seed}, drawn as the training data describes: “${m.description}”.`;
  const bytes = m.png;
  lastInput = { kind: "scene", bytes: bytes.slice() };
  showPicture(bytes, "image/png");
  $("preview").querySelector("img")?.classList.add("pixelated");
  return runCaption({ image: bytes }, [bytes.buffer]);
}

// ---------- camera ----------

let stream = null;

async function openCamera() {
  hideError();
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    return showError(`The camera could not be opened (${e.name === "NotAllowedError" ? "permission was refused" : e.message}).`);
  }
  $("camera-video").srcObject = stream;
  $("camera-box").hidden = false;
}

function closeCamera() {
  if (stream) for (const t of stream.getTracks()) t.stop();
  stream = null;
  $("camera-box").hidden = true;
}

async function snap() {
  const v = $("camera-video");
  const canvas = document.createElement("canvas");
  canvas.width = v.videoWidth;
  canvas.height = v.videoHeight;
  canvas.getContext("2d").drawImage(v, 0, 0);
  const blob = await new Promise((r) => canvas.toBlob(r, "image/png"));
  return captionImageBytes(new Uint8Array(await blob.arrayBuffer()), "image/png");
}

// ---------- wiring ----------

function updateSettingsVisibility() {
  const s = $("strategy").value;
  for (const el of document.querySelectorAll("#settings [data-for]")) el.hidden = el.dataset.for !== s;
}

function wire() {
  $("file").onchange = (e) => captionFile(e.target.files[0]).finally(() => (e.target.value = ""));
  $("video-file").onchange = (e) => captionFile(e.target.files[0]).finally(() => (e.target.value = ""));
  $("scene").onclick = () => randomScene().catch((e) => showError(e.message));
  $("camera").onclick = openCamera;
  $("camera-stop").onclick = closeCamera;
  $("snap").onclick = () => snap().catch((e) => showError(e.message));
  $("strategy").onchange = updateSettingsVisibility;
  updateSettingsVisibility();
  const drop = $("drop");
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add("over");
  };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    captionFile(e.dataTransfer.files[0]);
  };
  document.addEventListener("paste", (e) => {
    const file = Array.from(e.clipboardData?.files || [])[0];
    if (file) {
      e.preventDefault();
      captionFile(file);
    }
  });
  $("copy").onclick = async () => {
    const text = $("caption").textContent;
    try {
      await navigator.clipboard.writeText(text);
      $("copy").textContent = "Copied";
    } catch {
      showError("The browser did not allow copying; select the caption and copy it by hand.");
    }
    setTimeout(() => ($("copy").textContent = "Copy as alt text"), 1500);
  };
  $("model-url-form").onsubmit = (e) => {
    e.preventDefault();
    let url;
    try {
      url = new URL($("model-url").value.trim() || ".", location.href);
    } catch {
      return showError("That is not a web address.");
    }
    if (url.origin !== location.origin) {
      return showError("For your privacy this page only loads models from its own site. Download the folder and use “a folder on this computer” instead.");
    }
    if (!url.pathname.endsWith("/")) url.pathname += "/";
    loadModel(() => fetchModel(url.href), url.pathname);
  };
  $("model-folder").onchange = (e) => {
    const files = Array.from(e.target.files);
    const name = files[0]?.webkitRelativePath?.split("/")[0] || "folder";
    loadModel(() => readLocalFolder(files), `“${name}”`);
  };
}

// Hooks for the browser tests and benchmarks (not used by the page itself).
window.captioner = {
  lastInput: () => lastInput,
  captionBytes: (bytes) => captionImageBytes(new Uint8Array(bytes), ""),
  async bench(bytes, runs, tokens) {
    const times = [];
    for (let i = 0; i < runs; i++) {
      const copy = new Uint8Array(bytes);
      const m = await ask(
        { type: "caption", image: copy, settings: JSON.stringify({ maxLength: tokens, ignoreEos: true }) },
        [copy.buffer],
      );
      times.push(m.ms);
    }
    return times;
  },
};

startWorker();
wire();
// The page itself opens offline after the first visit (the model comes from the Cache API).
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("./sw.js").catch(() => {});
}
const modelParam = params.get("model");
let base = new URL(DEFAULT_MODEL, location.href);
if (modelParam) {
  const u = new URL(modelParam, location.href);
  if (u.origin === location.origin) base = u;
  if (!base.pathname.endsWith("/")) base.pathname += "/";
}
loadModel(() => fetchModel(base.href), base.pathname === new URL(DEFAULT_MODEL, location.href).pathname ? "(default)" : base.pathname);
