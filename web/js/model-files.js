// Model folders: fetched with byte-level progress, checked against manifest.json's sha256, kept
// in the Cache API under their checksums; or read from a folder on this computer.

import { $ } from "./ui.js";

const CACHE_NAME = "caption-models-v1";


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
export async function fetchModel(base) {
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

export async function readLocalFolder(fileList) {
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
