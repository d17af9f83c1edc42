// The service worker keeps the look of the app (styles, script, icon) and an offline page on
// the device, nothing else: pages and the API always go to the network, so balances, history
// and other private data are never stored here. A new release has a new cache name, and the
// old caches are dropped when it takes over.
"use strict";
var CACHE = "etx-static-__VERSION__";
var SHELL = ["/static/app.css", "/static/app.js", "/static/favicon.svg", "/offline"];

self.addEventListener("install", function (e) {
  e.waitUntil(caches.open(CACHE).then(function (c) { return c.addAll(SHELL); })
    .then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (e) {
  e.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) {
      return k.indexOf("etx-static-") === 0 && k !== CACHE;
    }).map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (e) {
  var req = e.request;
  if (req.method !== "GET") return;
  var url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.indexOf("/static/") === 0) {
    // Served from the device at once, refreshed from the network for next time.
    var fresh = fetch(req).then(function (r) {
      if (r.ok) {
        var copy = r.clone();
        caches.open(CACHE).then(function (c) { c.put(req, copy); });
      }
      return r;
    });
    e.waitUntil(fresh.catch(function () {}));
    e.respondWith(caches.match(req).then(function (hit) { return hit || fresh; }));
    return;
  }
  if (req.mode === "navigate") {
    e.respondWith(fetch(req).catch(function () { return caches.match("/offline"); }));
  }
});
