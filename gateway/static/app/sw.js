/*
 * smartcharge driver app service worker: keeps the app shell (page, modules, styles, icons)
 * so the app opens offline or on a bad connection. Network first, cache as the fallback;
 * the API (/api/...) and event streams are never cached.
 */

const CACHE = "smartcharge-app-v3";
const SHELL = [
  "/app",
  "/static/app/app.js",
  "/static/app/ui.js",
  "/static/app/nearby.js",
  "/static/app/charging.js",
  "/static/app/activity.js",
  "/static/app/cards.js",
  "/static/app/app.css",
  "/static/app/icon.svg",
  "/static/app/icon-maskable.svg",
  "/static/app/icon-192.png",
  "/static/app/apple-touch-icon.png",
  "/static/app/manifest.webmanifest",
  "/static/shared/api.js",
  "/static/shared/tabsync.js",
  "/static/shared/sse.js",
  "/static/shared/map.js",
  "/static/app/nearbymap.js",
  "/static/shared/map.css",
  "/static/vendor/leaflet/leaflet.js",
  "/static/vendor/leaflet/leaflet.css",
  "/static/vendor/markercluster/leaflet.markercluster.js",
  "/static/vendor/markercluster/MarkerCluster.css",
  "/static/shared/format.js",
  "/static/shared/base.css",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

function cacheable(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return false;
  return url.pathname === "/app" || url.pathname.startsWith("/static/");
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (!cacheable(request)) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(async () => {
        const cached = await caches.match(request, { ignoreSearch: true });
        if (cached) return cached;
        if (request.mode === "navigate") {
          const shell = await caches.match("/app");
          if (shell) return shell;
        }
        return Response.error();
      }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(
    self.clients.matchAll({ type: "window" }).then((windows) => {
      for (const win of windows) {
        if ("focus" in win) return win.focus();
      }
      return self.clients.openWindow("/app");
    }),
  );
});
