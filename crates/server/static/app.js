// ETX Processor — progressive enhancement only; every page works without this file.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("etx-theme"); } catch (e) { /* storage may be blocked */ }
  if (saved === "dark" || saved === "light") root.setAttribute("data-theme", saved);

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var dark = root.getAttribute("data-theme") === "dark" ||
          (!root.getAttribute("data-theme") && window.matchMedia("(prefers-color-scheme: dark)").matches);
        var next = dark ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try { localStorage.setItem("etx-theme", next); } catch (e) { /* ignore */ }
      });
    }
    // Password strength: length and character classes, shown on a <meter>.
    var labels = ["Too weak", "Weak", "Fair", "Good", "Strong"];
    document.querySelectorAll("input[data-strength]").forEach(function (input) {
      var meter = document.getElementById(input.getAttribute("data-strength"));
      var text = document.getElementById(input.getAttribute("data-strength") + "-text");
      input.addEventListener("input", function () {
        var v = input.value, s = 0;
        if (v.length >= 8) s++;
        if (v.length >= 12) s++;
        if (/[a-z]/.test(v) && /[A-Z]/.test(v)) s++;
        if (/\d/.test(v) && /[^A-Za-z0-9]/.test(v)) s++;
        if (v.length < 8) s = Math.min(s, 1);
        if (meter) meter.value = s;
        if (text) text.textContent = v ? labels[s] : "";
      });
    });
  });
})();

// Recipient lookup as you type: fills the input's <datalist> from /api/users/search.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  document.querySelectorAll("input[data-lookup]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("data-lookup"));
    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      var q = input.value.trim();
      if (q.length < 2 || !list) return;
      timer = setTimeout(function () {
        fetch("/api/users/search?q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : { users: [] }; })
          .then(function (b) {
            list.replaceChildren();
            b.users.forEach(function (u) {
              var o = document.createElement("option");
              o.value = u.username;
              list.appendChild(o);
            });
          })
          .catch(function () { /* lookup is a convenience; typing still works */ });
      }, 200);
    });
  });
});

// Live prices: pages with [data-live-prices] follow /ws/prices, reconnecting with backoff, and
// show the "Stale" badge when nothing has arrived for 30 s.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  if (!document.querySelector("[data-live-prices]") || !window.WebSocket) return;
  var badge = document.querySelector("[data-stale-badge]");
  var last = Date.now(), delay = 1000;
  function setStale(s) { if (badge) badge.hidden = !s; }
  setInterval(function () { if (Date.now() - last > 30000) setStale(true); }, 5000);
  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/prices");
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type !== "price_update") return;
      last = Date.now(); delay = 1000; setStale(false);
      Object.keys(m.prices).forEach(function (sym) {
        document.querySelectorAll('[data-price="' + sym + '"]').forEach(function (el) {
          if (el.textContent !== m.prices[sym]) {
            el.textContent = m.prices[sym];
            el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
          }
        });
      });
    };
    ws.onclose = function () { setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); };
  }
  connect();
});

// Private events on signed-in pages: a minimal Socket.IO client (Engine.IO v4 over a plain
// WebSocket; the session cookie signs it in). Balances follow wallet_update; money received,
// notifications and announcements appear as toasts.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  if (!document.body.hasAttribute("data-live-account") || !window.WebSocket) return;
  var toasts = document.getElementById("live-toasts");
  var delay = 1000;
  function toast(text, kind) {
    if (!toasts) return;
    var p = document.createElement("p");
    p.className = "toast" + (kind ? " " + kind : "");
    p.textContent = text;
    toasts.appendChild(p);
    setTimeout(function () { p.remove(); }, 8000);
  }
  var handlers = {
    wallet_update: function (d) {
      document.querySelectorAll('[data-asset="' + d.currency + '"]').forEach(function (el) {
        el.textContent = d.balance;
        el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
      });
    },
    transaction_update: function (d) {
      if (d.direction === "in" && d.counterparty && d.counterparty.username) {
        toast("Received " + d.amount + " " + d.currency + " from " + d.counterparty.username + ".", "ok");
      }
    },
    notification: function (d) { if (d.kind !== "transfer_received") toast(d.title); },
    job_update: function (d) {
      document.querySelectorAll('[data-job="' + d.id + '"]').forEach(function (el) {
        var bar = el.querySelector("[data-job-progress]");
        if (bar) { bar.value = d.progress; bar.textContent = d.progress + " %"; }
        var st = el.querySelector("[data-job-status]");
        if (st) st.textContent = d.status;
        var msg = el.querySelector("[data-job-message]");
        if (msg) msg.textContent = d.message;
        // A job page shows the steps and buttons of the final state once it ends.
        if (el.hasAttribute("data-job-page") && /^(completed|failed|cancelled)$/.test(d.status)) {
          setTimeout(function () { location.reload(); }, 300);
        }
      });
      if (/^(completed|failed|cancelled)$/.test(d.status)) {
        toast("Job on " + d.input_name + ": " + d.status + ". " + d.message,
          d.status === "completed" ? "ok" : "");
      }
    },
    announcement: function (d) { toast("Announcement: " + d.message, d.level); }
  };
  // An update sent before the socket joined is missed: once joined, a job page whose job
  // still shows as waiting or running asks for its state once.
  function catchUp() {
    document.querySelectorAll("[data-job-page]").forEach(function (el) {
      var st = el.querySelector("[data-job-status]");
      if (!st || !/^(queued|running)$/.test(st.textContent)) return;
      fetch("/api/jobs/" + encodeURIComponent(el.getAttribute("data-job")), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d && d.job && d.job.status !== st.textContent) handlers.job_update(d.job); })
        .catch(function () { /* the live updates still come */ });
    });
  }
  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host +
      "/socket.io/?EIO=4&transport=websocket");
    ws.onmessage = function (ev) {
      var m = String(ev.data);
      if (m === "2") { ws.send("3"); return; }          // Engine.IO ping → pong
      if (m.charAt(0) === "0") { ws.send("40"); return; } // open → join the default namespace
      if (m.indexOf("40") === 0) { delay = 1000; catchUp(); return; }
      if (m.indexOf("42") === 0) {
        var body = m.slice(2).replace(/^\d+/, "");       // drop an ack id, if any
        var p;
        try { p = JSON.parse(body); } catch (e) { return; }
        var h = handlers[p[0]];
        if (h) h(p[1] || {});
      }
    };
    ws.onclose = function () { setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); };
  }
  connect();
});
