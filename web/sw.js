// Service worker: keeps the page itself (HTML, JS, wasm, CSS) so that it opens offline after
// the first visit. Network first, so a new build is picked up whenever the site is reachable;
// except trunk's files named by their content hash (page-<hash>.js, page-<hash>_bg.wasm,
// style-<hash>.css), which never change: those come from the cache when it has them, so a
// return visit compiles the page's wasm without waiting for the network.
// Model files are not kept here: the page (web/src/page/model_files.rs) stores them in the Cache
// API under their checksums.
const SHELL = "caption-app-shell-v1";
const MODEL_FILE = /\.safetensors$|\/manifest\.json$|tokenizer\.json$/;
const HASHED = /-[0-9a-f]{12,20}(_bg\.wasm|\.js|\.css)$/;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));

function fetchAndKeep(e) {
  return fetch(e.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      e.waitUntil(caches.open(SHELL).then((c) => c.put(e.request, copy)));
    }
    return response;
  });
}

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== self.location.origin || MODEL_FILE.test(url.pathname)) return;
  if (HASHED.test(url.pathname)) {
    e.respondWith(caches.match(e.request).then((hit) => hit || fetchAndKeep(e)));
    return;
  }
  e.respondWith(
    fetchAndKeep(e).catch(
      async () => (await caches.match(e.request, { ignoreSearch: e.request.mode === "navigate" })) || Response.error(),
    ),
  );
});
