// Captioning: decoding settings, pictures, video frames, synthetic scenes and the camera; words
// are shown as the worker streams them.

import { $, isBusy, setBusy, showError, hideError } from "./ui.js";
import { ask, loaded } from "./engine.js";

let maxFrames = 8;
let lastInput = null; // {kind, bytes} of the latest captioned input (test hook)

// The loaded model's most frames per clip.
export function setMaxFrames(n) {
  maxFrames = n;
}

export function getLastInput() {
  return lastInput;
}

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

async function runCaption(message, transfer) {
  if (!loaded()) return showError("No model is loaded yet.");
  if (isBusy()) return showError("Still working on the previous caption; try again in a moment.");
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

export async function captionImageBytes(bytes, type) {
  $("scene-description").hidden = true;
  lastInput = { kind: "image", bytes: bytes.slice() };
  showPicture(bytes, type);
  return runCaption({ image: bytes }, [bytes.buffer]);
}

export async function captionFile(file) {
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
  if (!loaded()) return showError("No model is loaded yet.");
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

export async function randomScene() {
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

export async function openCamera() {
  hideError();
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    return showError(`The camera could not be opened (${e.name === "NotAllowedError" ? "permission was refused" : e.message}).`);
  }
  $("camera-video").srcObject = stream;
  $("camera-box").hidden = false;
}

export function closeCamera() {
  if (stream) for (const t of stream.getTracks()) t.stop();
  stream = null;
  $("camera-box").hidden = true;
}

export async function snap() {
  const v = $("camera-video");
  const canvas = document.createElement("canvas");
  canvas.width = v.videoWidth;
  canvas.height = v.videoHeight;
  canvas.getContext("2d").drawImage(v, 0, 0);
  const blob = await new Promise((r) => canvas.toBlob(r, "image/png"));
  return captionImageBytes(new Uint8Array(await blob.arrayBuffer()), "image/png");
}
