// Drives the built page (dist/) in headless Chromium and writes what it saw to <out>/results.json.
// The Rust test web/tests/browser.rs builds dist/, runs this, and compares the captions with
// `native caption` on the same files. Usage:
//   node web/tests/browser.mjs --dist DIR --out DIR --images DIR --bad FILE [--bad-dir DIR] --video FILE [--videos DIR]
//        [--bench-model DIR --bench-runs N --bench-tokens T] [--skip-checks]
//        [--maps-image FILE --maps-video FILE]
//        [--tti-dists LABEL=DIR,LABEL=DIR --tti-runs N]
import http from "node:http";
import zlib from "node:zlib";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
  const next = process.argv[i + 1];
  if (next === undefined || next.startsWith("--")) args[a.slice(2)] = true;
  else args[a.slice(2)] = process.argv[++i];
}
const out = args.out;
fs.mkdirSync(out, { recursive: true });
const log = (...m) => console.log("[browser]", ...m);

// ---------- a static server on 127.0.0.1 that logs every request ----------
const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
  ".json": "application/json", ".png": "image/png", ".safetensors": "application/octet-stream",
};
const requests = [];
// A copy of the default model with one byte of its weights changed (checksum test).
const damaged = fs.mkdtempSync(path.join(os.tmpdir(), "caption-damaged-"));
if (args.dist && fs.existsSync(path.join(args.dist, "model"))) {
  for (const f of fs.readdirSync(path.join(args.dist, "model"))) fs.copyFileSync(path.join(args.dist, "model", f), path.join(damaged, f));
  const w = fs.readFileSync(path.join(damaged, "model.safetensors"));
  w[w.length - 100] ^= 0x55;
  fs.writeFileSync(path.join(damaged, "model.safetensors"), w);
}
const SUB_PATH = "/demo/captioner/";
// Builds to time (`--tti-dists`), each served from its own folder `/tti/<label>/`.
const ttiDists = (args["tti-dists"] || "").split(",").filter(Boolean).map((s) => s.split("="));
const mounts = [["/bench-model/", args["bench-model"]], ["/damaged-model/", damaged],
  ...ttiDists.map(([label, dir]) => [`/tti/${label}/`, dir]),
  // The page from a sub-path, as a project page of a static host serves it.
  [SUB_PATH, args.dist], ["/", args.dist]].filter(([, d]) => d);
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  requests.push(url.pathname);
  for (const [prefix, dir] of mounts) {
    if (!url.pathname.startsWith(prefix)) continue;
    let rel = decodeURIComponent(url.pathname.slice(prefix.length)) || "index.html";
    const file = path.resolve(dir, rel);
    if (!file.startsWith(path.resolve(dir)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) break;
    res.writeHead(200, {
      "content-type": TYPES[path.extname(file)] || "application/octet-stream",
      "content-length": fs.statSync(file).size,
    });
    fs.createReadStream(file).pipe(res);
    return;
  }
  res.writeHead(404);
  res.end("not found");
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;
const origin = `http://127.0.0.1:${port}`;
log("serving", args.dist, "at", origin);

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "caption-chromium-"));
const launch = (dir, extra) => chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    // A synthetic camera, allowed without a prompt, for the camera button.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", ...extra],
  viewport: { width: 900, height: 1100 },
});
// WebGPU on SwiftShader (the CPU): the only flag it needs (../shared/TOOLCHAIN.md).
let context = await launch(userDir, ["--enable-unsafe-webgpu"]);
const results = { origin, images: [], outside: [], console: [] };
context.on("request", (r) => {
  const u = r.url();
  if (!u.startsWith(origin) && !u.startsWith("blob:") && !u.startsWith("data:")) results.outside.push(u);
});

// The CPU engine, forced: the page's own checks run on it (fast, and compared with native);
// without a query the page picks WebGPU where the browser has it.
const CPU = "?backend=cpu";

async function open(query = "", folder = "/") {
  const page = await context.newPage();
  page.on("console", (m) => results.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => results.console.push(`pageerror: ${e.message}`));
  await page.goto(`${origin}${folder}${query}`);
  await page.waitForFunction(() => ["ready", "no-model"].includes(document.body.dataset.state), null, { timeout: 600_000 });
  return page;
}

// Bytes (raw and gzip -9) of a build's page code: its main wasm, its JavaScript (trunk's glue and
// any hand-written page modules; not the service worker) and the worker's wasm and JavaScript.
function pageSizes(dir) {
  const files = [];
  const walk = (d) => {
    for (const f of fs.readdirSync(d)) {
      const p = path.join(d, f);
      if (fs.statSync(p).isDirectory()) { if (f !== "model") walk(p); } else files.push(p);
    }
  };
  walk(dir);
  const sizes = {};
  const add = (group, p) => {
    const bytes = fs.readFileSync(p);
    sizes[group] ??= { raw: 0, gzip: 0, files: [] };
    sizes[group].raw += bytes.length;
    sizes[group].gzip += zlib.gzipSync(bytes, { level: 9 }).length;
    sizes[group].files.push(path.relative(dir, p));
  };
  for (const p of files) {
    const name = path.basename(p);
    if (name === "sw.js" || !/\.(js|wasm)$/.test(name)) continue;
    const worker = name.startsWith("worker");
    add(`${worker ? "worker" : "page"}_${name.endsWith(".wasm") ? "wasm" : "js"}`, p);
  }
  return sizes;
}

async function captionWith(page, selector, file) {
  await page.evaluate(() => {
    const cap = document.getElementById("caption");
    cap.dataset.state = "waiting";
    // Counts the distinct texts the caption shows while it is being generated.
    window.__seen = new Set();
    window.__observer?.disconnect();
    window.__observer = new MutationObserver(() => {
      if (cap.dataset.state === "running") window.__seen.add(cap.textContent);
    });
    window.__observer.observe(cap, { childList: true, characterData: true, subtree: true });
  });
  if (selector.startsWith("#")) await page.setInputFiles(selector, file);
  else await page.click(selector.slice(6)); // "click:#id"
  await page.waitForFunction(() => {
    const s = document.getElementById("caption").dataset.state;
    return s === "done" || s === "error";
  }, null, { timeout: 600_000 });
  return page.evaluate(() => ({
    state: document.getElementById("caption").dataset.state,
    caption: document.getElementById("caption").textContent,
    tokens: document.getElementById("caption").dataset.tokens,
    error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
    ms: Number(document.getElementById("timing").dataset.ms || 0),
    timing: document.getElementById("timing").textContent,
    partials: window.__seen.size,
  }));
}

try {
  if (!args["skip-checks"]) {
    // ---- first visit: the model comes from the network ----
    requests.length = 0;
    let page = await open(CPU);
    results.firstVisit = {
      state: await page.evaluate(() => document.body.dataset.state),
      status: await page.textContent("#model-status"),
      source: await page.evaluate(() => document.getElementById("model-status").dataset.source),
      modelRequests: requests.filter((p) => /model\.safetensors|tokenizer\.json/.test(p)),
      error: await page.evaluate(() => document.getElementById("error").textContent),
      description: await page.evaluate(() => {
        const d = document.getElementById("model-description");
        return d.hidden ? null : d.textContent;
      }),
    };
    log("first visit:", results.firstVisit.status, "|", results.firstVisit.description);
    const images = fs.readdirSync(args.images)
      .filter((f) => /\.(png|jpe?g|webp|gif)$/i.test(f))
      .sort();
    for (const f of images) {
      const r = await captionWith(page, "#file", path.join(args.images, f));
      log(f, "->", r.caption || r.error, `(${Math.round(r.ms)} ms)`);
      results.images.push({ file: path.join(args.images, f), ...r });
    }
    // ---- beam search and nucleus sampling on the first image ----
    await page.selectOption("#strategy", "beam");
    await page.fill("#beam-width", "3");
    results.beam = { file: path.join(args.images, images[0]), ...(await captionWith(page, "#file", path.join(args.images, images[0]))) };
    await page.selectOption("#strategy", "nucleus");
    results.nucleus = await captionWith(page, "#file", path.join(args.images, images[0]));
    await page.selectOption("#strategy", "greedy");
    log("beam ->", results.beam.caption, "| nucleus ->", results.nucleus.caption);
    // ---- a synthetic scene ----
    await page.evaluate(() => (document.getElementById("caption").dataset.state = "waiting"));
    await page.click("#scene");
    await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("caption").dataset.state), null, { timeout: 600_000 });
    const scenePng = await page.evaluate(() => Array.from(window.captioner.lastInput().bytes));
    fs.writeFileSync(path.join(out, "scene.png"), Buffer.from(scenePng));
    results.scene = {
      file: path.join(out, "scene.png"),
      caption: await page.textContent("#caption"),
      tokens: await page.evaluate(() => document.getElementById("caption").dataset.tokens),
      state: await page.evaluate(() => document.getElementById("caption").dataset.state),
      description: await page.textContent("#scene-description"),
    };
    log("scene ->", results.scene.caption, "|", results.scene.description);
    await page.screenshot({ path: path.join(out, "screenshot-scene.png"), fullPage: true });
    // ---- a broken file, then the page still works ----
    results.bad = await captionWith(page, "#file", args.bad);
    log("bad file ->", results.bad.error);
    // Every file of the bad-files folder: an error or a caption, as native gives.
    results.badFiles = [];
    if (args["bad-dir"]) {
      for (const f of fs.readdirSync(args["bad-dir"]).sort()) {
        const r = await captionWith(page, "#file", path.join(args["bad-dir"], f));
        log(f, "->", r.caption || r.error);
        results.badFiles.push({ file: path.join(args["bad-dir"], f), ...r });
      }
    }
    results.afterBad = await captionWith(page, "#file", path.join(args.images, images[0]));
    // ---- a video ----
    results.video = await captionWith(page, "#video-file", args.video);
    log("video ->", results.video.caption || results.video.error, results.video.timing);
    // Every clip of the videos folder, for the comparison with `native caption --frames 8`.
    results.videos = [];
    if (args.videos) {
      await page.fill("#frames", "8");
      for (const f of fs.readdirSync(args.videos).filter((f) => f.endsWith(".mp4")).sort()) {
        const r = await captionWith(page, "#video-file", path.join(args.videos, f));
        log(f, "->", r.state === "done" ? r.caption : r.error);
        // The frames the page sent to the worker, for the pixel comparison with native's.
        const frames = r.state !== "done" ? null : await page.evaluate(() => {
          const l = window.captioner.lastInput();
          if (!l || l.kind !== "video" || !l.bytes) return null;
          const b = l.bytes instanceof Uint8Array ? l.bytes : Uint8Array.from(l.bytes);
          let s = "";
          for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
          return { size: l.frame_size, b64: btoa(s) };
        });
        if (frames) {
          r.framesFile = path.join(out, f + ".rgba");
          r.frameSize = frames.size;
          fs.writeFileSync(r.framesFile, Buffer.from(frames.b64, "base64"));
        }
        results.videos.push({ file: path.join(args.videos, f), ...r });
      }
    }
    await page.screenshot({ path: path.join(out, "screenshot.png"), fullPage: true });
    // ---- the camera (Chromium's fake one) ----
    await page.click("#camera");
    await page.waitForFunction(() => document.getElementById("camera-video").videoWidth > 0, null, { timeout: 60_000 });
    results.camera = await captionWith(page, "click:#snap", null);
    log("camera ->", results.camera.caption || results.camera.error);
    await page.click("#camera-stop");
    // ---- copy as alt text: the caption lands on the clipboard ----
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
    await page.click("#copy");
    results.copied = {
      caption: await page.textContent("#caption"),
      clipboard: await page.evaluate(() => navigator.clipboard.readText()),
      button: await page.textContent("#copy"),
    };
    log("copied ->", results.copied.clipboard);
    // ---- a malformed message from the worker (a missing field): an error in words, no exception ----
    const pageErrors = () => results.console.filter((l) => l.startsWith("pageerror"));
    const errorsBefore = pageErrors().length;
    results.malformed = await page.evaluate(async () => {
      document.getElementById("error").textContent = "";
      const data = { done: { id: 999999, caption: { text: "a caption without tokens, ms, backend or frames" } } };
      window.captioner.worker().dispatchEvent(new MessageEvent("message", { data }));
      await new Promise((r) => setTimeout(r, 200));
      return { error: document.getElementById("error").textContent };
    });
    results.malformed.pageErrors = pageErrors().slice(errorsBefore);
    results.afterMalformed = await captionWith(page, "#file", path.join(args.images, images[0]));
    log("malformed message ->", results.malformed.error, "| then", results.afterMalformed.caption);
    // ---- the engine runs out of memory: the page says so, restarts it, and captions again ----
    results.oom = { message: await page.evaluate(() => window.captioner.exhaustMemory()) };
    results.oom.error = await page.textContent("#error");
    results.afterOom = await captionWith(page, "#file", path.join(args.images, images[0]));
    log("out of memory ->", results.oom.error, "| then", results.afterOom.caption);
    // ---- another model by URL: a damaged copy is refused, the loaded model stays ----
    await page.click("#other-model summary");
    await page.fill("#model-url", "damaged-model/");
    await page.evaluate(() => (document.getElementById("error").textContent = ""));
    await page.click("#model-url-form button");
    await page.waitForFunction(() => document.getElementById("error").textContent !== "", null, { timeout: 120_000 });
    results.damaged = {
      error: await page.textContent("#error"),
      status: await page.textContent("#model-status"),
      state: await page.evaluate(() => document.body.dataset.state),
    };
    log("damaged model ->", results.damaged.error);
    results.afterDamaged = await captionWith(page, "#file", path.join(args.images, images[0]));
    // ---- another model by URL: a good one (the default folder again) ----
    await page.fill("#model-url", "model/");
    await page.evaluate(() => (document.body.dataset.state = "loading-by-url"));
    await page.click("#model-url-form button");
    await page.waitForFunction(() => document.body.dataset.state === "ready" && document.getElementById("progress").hidden, null, { timeout: 120_000 });
    results.byUrl = { status: await page.textContent("#model-status") };
    log("model by URL ->", results.byUrl.status);
    // ---- another model from a folder on this computer (the default folder of dist/) ----
    await page.evaluate(() => (document.body.dataset.state = "loading-folder"));
    await page.setInputFiles("#model-folder", path.join(args.dist, "model"));
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 120_000 });
    results.byFolder = { status: await page.textContent("#model-status") };
    results.afterFolder = await captionWith(page, "#file", path.join(args.images, images[0]));
    log("model from a folder ->", results.byFolder.status);
    await page.close();

    // ---- second visit: the model comes from the Cache API ----
    requests.length = 0;
    page = await open(CPU);
    results.secondVisit = {
      state: await page.evaluate(() => document.body.dataset.state),
      status: await page.textContent("#model-status"),
      source: await page.evaluate(() => document.getElementById("model-status").dataset.source),
      requests: [...requests],
      modelRequests: requests.filter((p) => /model\.safetensors|tokenizer\.json/.test(p)),
    };
    results.secondVisit.caption = (await captionWith(page, "#file", path.join(args.images, images[0]))).caption;
    log("second visit:", results.secondVisit.status, "requests:", results.secondVisit.requests.join(" "));
    // ---- offline (the server stopped): the page and the model still load, and caption ----
    await page.close();
    await new Promise((r) => {
      server.close(r);
      server.closeAllConnections();
    });
    page = await open(CPU);
    results.offline = {
      state: await page.evaluate(() => document.body.dataset.state),
      status: await page.textContent("#model-status"),
      error: await page.evaluate(() => document.getElementById("error").textContent),
    };
    results.offline.caption = (await captionWith(page, "#file", path.join(args.images, images[0]))).caption;
    log("offline:", results.offline.status, results.offline.error);
    await new Promise((r) => server.listen(port, "127.0.0.1", r));
    // ---- no query in a browser with WebGPU: the WebGPU engine captions every image ----
    await page.close();
    const noticeOf = (p) => p.evaluate(() => (document.getElementById("notice").hidden ? null : document.getElementById("notice").textContent));
    page = await open();
    results.webgpu = {
      state: await page.evaluate(() => document.body.dataset.state),
      status: await page.textContent("#model-status"),
      notice: await noticeOf(page),
      images: [],
    };
    log("webgpu:", results.webgpu.status, results.webgpu.notice || "");
    for (const f of images) {
      const r = await captionWith(page, "#file", path.join(args.images, f));
      log("webgpu", f, "->", r.caption || r.error, `(${Math.round(r.ms)} ms)`);
      results.webgpu.images.push({ file: path.join(args.images, f), ...r });
    }
    results.webgpu.scene = await captionWith(page, "#file", results.scene.file);
    await page.screenshot({ path: path.join(out, "screenshot-webgpu.png"), fullPage: true });
    await page.close();
    // ---- a browser without WebGPU: the page falls back to the CPU with a notice ----
    await context.close();
    context = await launch(userDir, ["--disable-features=WebGPU"]);
    page = await open();
    results.noWebgpu = {
      state: await page.evaluate(() => document.body.dataset.state),
      status: await page.textContent("#model-status"),
      notice: await noticeOf(page),
    };
    log("no webgpu:", results.noWebgpu.notice);
    await page.close();
    // ---- from a sub-path of the site (a fresh profile): every request stays under it ----
    await context.close();
    const subDir = fs.mkdtempSync(path.join(os.tmpdir(), "caption-subpath-"));
    context = await launch(subDir, []);
    requests.length = 0;
    page = await context.newPage();
    page.on("pageerror", (e) => results.console.push(`pageerror: ${e.message}`));
    await page.goto(`${origin}${SUB_PATH}${CPU}`);
    await page.waitForFunction(() => ["ready", "no-model"].includes(document.body.dataset.state), null, { timeout: 600_000 });
    results.subPath = {
      state: await page.evaluate(() => document.body.dataset.state),
      status: await page.textContent("#model-status"),
      serviceWorkerScope: await page.evaluate(async () => (await navigator.serviceWorker.ready).scope),
    };
    results.subPath.caption = (await captionWith(page, "#file", path.join(args.images, images[0]))).caption;
    results.subPath.requests = [...requests];
    log("sub-path:", results.subPath.status, "requests:", results.subPath.requests.join(" "));
    await page.close();
  }

  // ---- word maps: the switch, the word buttons, the overlay (CPU engine, then WebGPU) ----
  if (args["maps-image"]) {
    // Counts the kinds of message the page posts to its worker (`{"wordMaps": ..}` → wordMaps).
    const openCounting = async (query) => {
      const page = await context.newPage();
      page.on("console", (m) => results.console.push(`${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => results.console.push(`pageerror: ${e.message}`));
      await page.addInitScript(() => {
        window.__posted = [];
        const post = Worker.prototype.postMessage;
        Worker.prototype.postMessage = function (m, ...rest) {
          if (m && typeof m === "object") window.__posted.push(Object.keys(m)[0]);
          return post.call(this, m, ...rest);
        };
      });
      await page.goto(`${origin}/${query}`);
      await page.waitForFunction(() => ["ready", "no-model"].includes(document.body.dataset.state), null, { timeout: 600_000 });
      return page;
    };
    // Waits for the word buttons, or for the status line to say why there are none.
    const wordsShown = async (page) => {
      await page.waitForFunction(() => {
        const status = document.getElementById("maps-status").textContent;
        return document.getElementById("caption").dataset.maps || (status && !status.startsWith("Computing"));
      }, null, { timeout: 300_000 });
      const status = await page.textContent("#maps-status");
      if (!(await page.evaluate(() => document.getElementById("caption").dataset.maps))) {
        throw new Error(`no word buttons; the page says: ${status}`);
      }
    };
    // Hovers every word, reading the overlay's grid and where it lies against the picture.
    const hoverEach = async (page, shot) => {
      const words = [];
      const n = await page.locator("#caption button.word").count();
      for (let k = 0; k < n; k++) {
        await page.hover(`#caption button.word[data-index="${k}"]`);
        await page.waitForSelector(`#map-overlay[data-token="${k}"]`, { timeout: 60_000 });
        words.push(await page.evaluate(() => {
          const o = document.getElementById("map-overlay");
          const media = document.querySelector("#preview img, #preview video");
          const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
          return {
            text: document.querySelector(`#caption button.word[data-index="${o.dataset.token}"]`).textContent,
            grid: o.dataset.grid.split(",").map(Number), rows: Number(o.dataset.rows), cols: Number(o.dataset.cols),
            frame: Number(o.dataset.frame), cells: o.children.length, label: o.getAttribute("aria-label"),
            overlayBox: box(o), mediaBox: box(media),
            natural: media.tagName === "VIDEO" ? [media.videoWidth, media.videoHeight] : [media.naturalWidth, media.naturalHeight],
            videoTime: media.tagName === "VIDEO" ? media.currentTime : null,
          };
        }));
      }
      await page.screenshot({ path: path.join(out, `screenshot-${shot}.png`), fullPage: true });
      // Leaving the word takes the overlay away.
      await page.mouse.move(0, 0);
      const afterLeave = await page.evaluate(() => !!document.getElementById("map-overlay"));
      return { words, afterLeave };
    };
    const state = (page) => page.evaluate(() => ({
      caption: document.getElementById("caption").textContent,
      tokens: document.getElementById("caption").dataset.tokens,
      buttons: document.querySelectorAll("#caption button.word").length,
      posted: window.__posted.slice(),
      status: document.getElementById("maps-status").textContent,
      mapsMs: Number(document.getElementById("maps-status").dataset.ms || 0),
    }));
    results.maps = {};
    for (const [engine, query] of [["cpu", CPU], ["webgpu", ""]]) {
      const page = await openCounting(query);
      const r = { status: await page.textContent("#model-status") };
      // Switch off (the default): a caption and nothing else.
      r.off = { ...(await captionWith(page, "#file", args["maps-image"])), ...(await state(page)) };
      // Switched on: the shown caption's maps are asked for, its words become buttons.
      await page.check("#maps-toggle");
      await wordsShown(page);
      r.on = await state(page);
      r.hover = await hoverEach(page, `maps-${engine}`);
      // Keyboard: focusing the second word shows its map; moving focus away hides it.
      await page.focus(`#caption button.word[data-index="1"]`);
      await page.waitForSelector(`#map-overlay[data-token="1"]`, { timeout: 60_000 });
      r.focused = await page.evaluate(() => ({ token: document.getElementById("map-overlay").dataset.token, status: document.getElementById("maps-status").textContent }));
      await page.focus("#copy");
      r.focused.afterBlur = await page.evaluate(() => !!document.getElementById("map-overlay"));
      if (engine === "cpu" && args["maps-video"]) {
        await page.fill("#frames", "8");
        const v = await captionWith(page, "#video-file", args["maps-video"]);
        await wordsShown(page);
        r.video = { ...v, ...(await state(page)), ...(await hoverEach(page, "maps-video")) };
        r.video.frameTimes = await page.evaluate(() => window.captioner.frameTimes());
      }
      // Switched off again: plain text, no overlay.
      await page.uncheck("#maps-toggle");
      r.offAgain = await state(page);
      log("maps", engine, r.on.caption, "|", r.on.status, "|", r.hover.words.map((w) => `${w.text}:${w.grid.map((x) => x.toFixed(3)).join(" ")}`).join(" ; "));
      results.maps[engine] = r;
      await page.close();
    }
  }

  // ---- benchmarks: ms per caption, greedy, eos never taken ----
  if (args["bench-runs"]) {
    const runs = Number(args["bench-runs"]);
    const tokens = Number(args["bench-tokens"] || 20);
    const input = [...fs.readFileSync(path.join(args.images, fs.readdirSync(args.images).filter((f) => /\.(png|jpe?g)$/i.test(f)).sort()[0]))];
    const bench = async (query, folder) => {
      const page = await open(query, folder);
      const status = await page.textContent("#model-status");
      const times = await page.evaluate(([b, n, t]) => window.captioner.bench(b, n, t), [input, runs + 1, tokens]);
      await page.close();
      const timed = times.slice(1).sort((a, b) => a - b);
      return { status, warmup_ms: times[0], median_ms: timed[Math.floor(timed.length / 2)], times };
    };
    const benchBuild = async (folder) => {
      const r = { cpu: await bench(CPU, folder) };
      log("bench", folder, "default model, CPU engine:", r.cpu.median_ms, "ms");
      if (args["bench-model"]) {
        r.fullSize = await bench(`${CPU}&model=/bench-model/`, folder);
        log("bench", folder, "full size:", r.fullSize.median_ms, "ms", r.fullSize.status);
      }
      return r;
    };
    results.bench = { tokens, runs, ...(await benchBuild("/")) };
    // With `--tti-dists`, those builds too, in the order A B B A (rounds against drifting load).
    if (ttiDists.length) {
      results.bench.builds = {};
      const order = [...ttiDists, ...[...ttiDists].reverse()];
      for (const [label] of order) {
        (results.bench.builds[label] ??= []).push(await benchBuild(`/tti/${label}/`));
      }
    }
  }

  // ---- time to interactive: first visit (a fresh profile), cached visit (the same profile, the
  // service worker and the Cache API filled) and a returning visit (the third: what the service
  // worker kept during the second), builds interleaved run by run ----
  if (args["tti-runs"]) {
    results.tti = {};
    const visits = ["first", "cached", "returning"];
    for (const [label, dir] of ttiDists) results.tti[label] = { sizes: pageSizes(dir), first: [], cached: [], returning: [] };
    for (let run = 0; run < Number(args["tti-runs"]); run++) {
      for (const [label] of ttiDists) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "caption-tti-"));
        const ctx = await launch(dir, []);
        // Marks when <body data-state> first leaves "starting" (the page's handlers are wired) and
        // first reaches "ready" (a model is loaded), in ms since navigation started.
        await ctx.addInitScript(() => {
          const marks = (window.__tti = {});
          const check = () => {
            const s = document.body?.dataset.state;
            if (s && s !== "starting" && marks.interactive === undefined) marks.interactive = performance.now();
            if (s === "ready" && marks.ready === undefined) marks.ready = performance.now();
          };
          new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
        });
        for (const visit of visits) {
          const p = await ctx.newPage();
          await p.goto(`${origin}/tti/${label}/${CPU}`);
          await p.waitForFunction(() => window.__tti.ready !== undefined, null, { timeout: 600_000 });
          results.tti[label][visit].push(await p.evaluate(() => window.__tti));
          await p.close();
        }
        await ctx.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const [label] of ttiDists) {
      const t = results.tti[label];
      for (const visit of visits) {
        t[`${visit}_median`] = { interactive: median(t[visit].map((m) => m.interactive)), ready: median(t[visit].map((m) => m.ready)) };
      }
      log("tti", label, JSON.stringify(t.sizes), ...visits.map((v) => `${v} ${JSON.stringify(t[`${v}_median`])}`));
    }
  }
} finally {
  fs.writeFileSync(path.join(out, "results.json"), JSON.stringify(results, null, 2));
  await context.close();
  server.close();
  fs.rmSync(userDir, { recursive: true, force: true });
  fs.rmSync(damaged, { recursive: true, force: true });
}
log("wrote", path.join(out, "results.json"));
