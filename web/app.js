// The page: loads a model folder and wires the inputs and settings to the modules of js/ —
// ui.js (page helpers), engine.js (the Web Worker running the wasm32 model), model-files.js
// (fetch with progress, sha256 checks, the Cache API) and captioning.js (pictures, video
// frames, scenes, the camera). Plain JavaScript, no framework, no request outside this page's
// origin.

import { $, setBusy, showError, hideError } from "./js/ui.js";
import { ask, startWorker, sendLoad, loaded, setLoaded } from "./js/engine.js";
import { fetchModel, readLocalFolder } from "./js/model-files.js";
import {
  captionFile,
  captionImageBytes,
  closeCamera,
  getLastInput,
  openCamera,
  randomScene,
  setMaxFrames,
  snap,
} from "./js/captioning.js";

const DEFAULT_MODEL = "model/";
const params = new URLSearchParams(location.search);

async function loadModel(getFiles, label) {
  setBusy(true);
  document.body.dataset.state = "loading";
  hideError();
  try {
    const files = await getFiles();
    $("model-status").textContent = "Preparing the model…";
    const m = await sendLoad(files);
    setLoaded(files);
    setMaxFrames(m.maxFrames);
    $("frames").max = String(m.maxFrames);
    if (Number($("frames").value) > m.maxFrames) $("frames").value = String(m.maxFrames);
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
    $("model-status").textContent = loaded() ? "The previous model is still loaded." : "No model is loaded.";
    document.body.dataset.state = loaded() ? "ready" : "no-model";
    showError(e.message);
  } finally {
    setBusy(false);
  }
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
  lastInput: getLastInput,
  captionBytes: (bytes) => captionImageBytes(new Uint8Array(bytes), ""),
  // Runs the engine out of memory: the page shows why and restarts it with the same model.
  async exhaustMemory() {
    try {
      await ask({ type: "exhaust-memory" });
      return null;
    } catch (e) {
      showError(e.message);
      return e.message;
    }
  },
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
