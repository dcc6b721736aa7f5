// The Web Worker that runs the model (the `web` crate's `worker` binary): requests with ids,
// streamed partial captions, and a restart with the same model when the worker dies.

import { showError } from "./ui.js";

const params = new URLSearchParams(location.search);
// No `?backend=`: the WebGPU engine where the browser has an adapter, else the CPU engine.
const backendParam = params.get("backend") || "auto";

let worker = null;
let workerReady = null;
let nextId = 1;
const pending = new Map(); // id -> {resolve, reject, onPartial}
let loadedFiles = null; // the model's three files, to reload after a worker crash

// The files of the loaded model, or null.
export function loaded() {
  return loadedFiles;
}

export function setLoaded(files) {
  loadedFiles = files;
}

export function startWorker() {
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

export async function ask(message, transfer = [], onPartial = null) {
  await workerReady;
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onPartial });
    worker.postMessage({ ...message, id }, transfer);
  });
}

export async function sendLoad(files) {
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
