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
    // On a narrow screen the navigation folds behind the Menu button; without this script it
    // stays open and wraps.
    var menuButton = document.getElementById("menu-toggle");
    var nav = document.getElementById("main-nav");
    if (menuButton && nav) {
      menuButton.hidden = false;
      nav.classList.add("collapsed");
      menuButton.addEventListener("click", function () {
        var open = nav.classList.toggle("collapsed") === false;
        menuButton.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }
    // One header menu open at a time; a click elsewhere or Escape closes it.
    var menus = document.querySelectorAll("details.menu");
    function closeMenus(except) {
      menus.forEach(function (d) { if (d !== except) d.open = false; });
    }
    menus.forEach(function (d) {
      d.addEventListener("toggle", function () { if (d.open) closeMenus(d); });
    });
    document.addEventListener("click", function (ev) {
      if (!ev.target.closest || !ev.target.closest("details.menu")) closeMenus(null);
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key !== "Escape") return;
      var open = document.querySelector("details.menu[open]");
      if (!open) return;
      open.open = false;
      open.querySelector("summary").focus();
    });
    // Password strength: the server's estimate of how hard it is to guess (the same one that
    // refuses a weak password), asked for once typing pauses; the user's own name and email
    // count as known words.
    document.querySelectorAll("input[data-strength]").forEach(function (input) {
      var meter = document.getElementById(input.getAttribute("data-strength"));
      var text = document.getElementById(input.getAttribute("data-strength") + "-text");
      var timer = null, asked = 0;
      function words() {
        var from = (input.getAttribute("data-strength-from") || "").split(" ");
        var out = { username: "", email: "" };
        from.forEach(function (id) {
          var el = id && document.getElementById(id);
          if (el) out[id === "email" ? "email" : "username"] = el.value;
        });
        var fixed = (input.getAttribute("data-strength-words") || "").split(" ");
        if (fixed[0]) out.username = fixed[0];
        if (fixed[1]) out.email = fixed[1];
        return out;
      }
      function show(b) {
        if (meter) meter.value = b ? b.score : 0;
        if (!text) return;
        if (!b) { text.textContent = ""; return; }
        var why = b.warning || (b.acceptable ? "" : b.suggestions[0] || "");
        text.textContent = b.label + (b.acceptable ? "" : " (not accepted)") + (why ? ": " + why : "");
      }
      input.addEventListener("input", function () {
        clearTimeout(timer);
        if (!input.value) { show(null); return; }
        if (!window.fetch) return;
        timer = setTimeout(function () {
          var w = words(), mine = ++asked;
          fetch("/api/auth/password-strength", {
            method: "POST",
            credentials: "same-origin",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ password: input.value, username: w.username, email: w.email })
          })
            .then(function (r) { return r.ok ? r.json() : null; })
            .then(function (b) { if (b && mine === asked) show(b); })
            .catch(function () { /* the form still checks on submit */ });
        }, 250);
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

// A changed figure is highlighted for a moment (an animation that ends by itself).
function flash(el) {
  el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
}

// Figures as the server writes them: thousands separators, and a price with 2 decimals from
// $1 up, 4 from a cent, 6 below (the server's rule, so a tick never changes a row's width).
function grouped(text) {
  return String(text).replace(/^([-+\u2212]?)(\d+)/, function (_, s, d) {
    return s + d.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  });
}
function priceText(text) {
  var n = Number(text), a = Math.abs(n);
  if (isNaN(n)) return text;
  var places = a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
  return grouped(n.toFixed(places));
}
function figure(el) { return Number(el.textContent.replace(/,/g, "")); }

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
        var now = Number(m.prices[sym]), text = priceText(m.prices[sym]);
        document.querySelectorAll('[data-price="' + sym + '"]').forEach(function (el) {
          if (el.textContent !== text) {
            el.textContent = text;
            flash(el);
          }
        });
        // The 24 h figures follow the live price: a new high or low, and the change against
        // the price 24 hours ago (for display only; the server's figures are exact).
        document.querySelectorAll('[data-high="' + sym + '"]').forEach(function (el) {
          if (!(figure(el) >= now)) { el.textContent = text; flash(el); }
        });
        document.querySelectorAll('[data-low="' + sym + '"]').forEach(function (el) {
          var low = figure(el);
          if (isNaN(low) || low > now) { el.textContent = text; flash(el); }
        });
        document.querySelectorAll('[data-holding="' + sym + '"]').forEach(function (row) {
          row.setAttribute("data-px", m.prices[sym]);
        });
        document.querySelectorAll('[data-change="' + sym + '"][data-open]').forEach(function (el) {
          var open = Number(el.getAttribute("data-open"));
          if (!(open > 0)) return;
          var pct = (now - open) / open * 100;
          el.textContent = pct.toFixed(2) + " %";
          el.classList.toggle("down", pct < 0);
          el.classList.toggle("up", pct >= 0);
        });
      });
      worthFollows();
    };
    ws.onclose = function () { setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); };
  }
  connect();
});

// The home page's total follows live prices: each holding's amount times its latest price, and
// the 24 h change against the prices of a day ago (display only; a reload gives exact cents).
function worthFollows() {
  "use strict";
  var card = document.querySelector("[data-worth]");
  if (!card) return;
  var total = 0, before = 0, known = false;
  card.querySelectorAll("[data-holding]").forEach(function (row) {
    var qty = Number(row.getAttribute("data-qty")), px = Number(row.getAttribute("data-px"));
    var open = row.getAttribute("data-open-px");
    if (!row.getAttribute("data-px")) return;
    var v = qty * px;
    total += v;
    before += open ? qty * Number(open) : v;
    if (open && row.getAttribute("data-holding") !== "USD") known = true;
    var cell = row.querySelector("[data-line-value]");
    if (cell) cell.textContent = "$" + grouped(v.toFixed(2));
  });
  var t = card.querySelector("[data-worth-total]");
  var text = "$" + grouped(total.toFixed(2));
  if (t && t.textContent !== text) { t.textContent = text; flash(t); }
  var c = card.querySelector("[data-worth-change]");
  if (c && known) {
    var d = total - before, sign = d < 0 ? "\u2212" : "+";
    var pct = before > 0 ? " (" + sign + Math.abs(d / before * 100).toFixed(2) + " %)" : "";
    c.textContent = sign + "$" + grouped(Math.abs(d).toFixed(2)) + pct;
    c.classList.toggle("down", d < 0);
    c.classList.toggle("up", d >= 0);
  }
}

// Sections marked [data-refresh] are fetched again when the account's money moves, so totals
// and recent activity stay current without a reload (a burst of events fetches once).
function refreshSections() {
  "use strict";
  clearTimeout(refreshSections.t);
  refreshSections.t = setTimeout(function () {
    if (!document.querySelector("[data-refresh][id]") || !window.fetch || !window.DOMParser) return;
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-refresh][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) {
            el.innerHTML = fresh.innerHTML;
            localTimes(el);
            flash(el);
          }
        });
      })
      .catch(function () { /* the next event tries again */ });
  }, 300);
}

// Private events on signed-in pages: a minimal Socket.IO client (Engine.IO v4 over a plain
// WebSocket; the session cookie signs it in). Balances follow wallet_update; money received,
// notifications and announcements appear as toasts.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  if (!document.body.hasAttribute("data-live-account") || !window.WebSocket) return;
  var toasts = document.getElementById("live-toasts");
  // The bell's unread count: read once, then counted up as notifications arrive.
  var unread = 0;
  function setUnread(n) {
    unread = n;
    document.querySelectorAll("[data-unread]").forEach(function (el) {
      el.textContent = n > 99 ? "99+" : String(n);
      el.hidden = n === 0;
    });
  }
  if (window.fetch && document.querySelector("[data-unread]")) {
    fetch("/api/notifications?limit=1", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) { if (b && typeof b.unread === "number") setUnread(b.unread); })
      .catch(function () { /* the bell stays without a count */ });
  }
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
        el.textContent = grouped(d.balance);
        flash(el);
      });
      refreshSections();
    },
    transaction_update: function (d) {
      refreshSections();
      if (d.direction === "in" && d.counterparty && d.counterparty.username) {
        toast("Received " + d.amount + " " + d.currency + " from " + d.counterparty.username + ".", "ok");
      }
    },
    notification: function (d) {
      if (d.kind !== "transfer_received") toast(d.title);
      setUnread(unread + 1);
    },
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

// A deposit under way: its order is checked every 5 s and the page shown again once the
// provider's status or the credit changes (never a timed reload).
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var card = document.querySelector("[data-deposit-order]");
  var status = document.getElementById("deposit-status");
  var credit = document.getElementById("deposit-credit");
  if (!card || !status || !credit || !window.fetch) return;
  var url = "/api/wallet/deposit/" + encodeURIComponent(card.getAttribute("data-deposit-order"));
  var timer = setInterval(function () {
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) {
        if (!b || !b.deposit) return;
        if (b.deposit.status !== status.getAttribute("data-status") ||
            b.deposit.credit_state !== credit.getAttribute("data-credit")) {
          clearInterval(timer);
          location.reload();
        }
      })
      .catch(function () { /* the next check tries again */ });
  }, 5000);
});

// A card whose content is wider than the screen scrolls inside itself; keyboard users reach
// that scrolling by focusing the card, so such a card (and only such a card) takes focus.
(function () {
  "use strict";
  function mark() {
    document.querySelectorAll(".card").forEach(function (c) {
      if (c.scrollWidth > c.clientWidth + 1) {
        c.setAttribute("tabindex", "0");
      } else if (c.getAttribute("tabindex") === "0") {
        c.removeAttribute("tabindex");
      }
    });
  }
  document.addEventListener("DOMContentLoaded", mark);
  window.addEventListener("resize", function () { clearTimeout(mark.t); mark.t = setTimeout(mark, 150); });
})();

// Times are sent in UTC; the reader sees them in their own time zone, the last day's as "5
// minutes ago", with the exact UTC time on hover. Plain dates stay as they are.
function localTimes(root) {
  "use strict";
  if (!window.Intl || !Intl.DateTimeFormat) return;
  var full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var rel = Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  root.querySelectorAll("time[datetime]").forEach(function (el) {
    var iso = el.getAttribute("datetime");
    if (iso.length <= 10) return;
    var d = new Date(iso);
    if (isNaN(d.getTime())) return;
    var secs = (Date.now() - d.getTime()) / 1000;
    el.title = iso.slice(0, 19).replace("T", " ") + " UTC";
    if (rel && secs >= 0 && secs < 3600) {
      el.textContent = rel.format(-Math.max(1, Math.round(secs / 60)), "minute");
    } else if (rel && secs >= 0 && secs < 86400) {
      el.textContent = rel.format(-Math.round(secs / 3600), "hour");
    } else {
      el.textContent = full.format(d);
    }
  });
}
document.addEventListener("DOMContentLoaded", function () { localTimes(document); });

// Copy buttons put a value on the clipboard (they need script, so they start hidden) and say
// so in place; the deposit order counts down to its deadline.
(function () {
  "use strict";
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    var src = document.getElementById(b.getAttribute("data-copy"));
    if (!src || !navigator.clipboard) return;
    var label = b.textContent;
    b.hidden = false;
    b.addEventListener("click", function () {
      navigator.clipboard.writeText(src.textContent.trim()).then(function () {
        b.textContent = "Copied";
        setTimeout(function () { b.textContent = label; }, 2000);
      }, function () { b.textContent = "Select and copy it by hand"; });
    });
  });
  var left = document.getElementById("deposit-countdown");
  if (!left) return;
  var until = Date.parse(left.getAttribute("data-until"));
  if (isNaN(until)) return;
  function tick() {
    var s = Math.round((until - Date.now()) / 1000);
    if (s <= 0) {
      left.textContent = "(expired: do not pay this order)";
      return;
    }
    var m = Math.floor(s / 60);
    var h = Math.floor(m / 60);
    var rest = (h ? h + ":" + String(m % 60).padStart(2, "0") : m) + ":" + String(s % 60).padStart(2, "0");
    left.textContent = "(" + rest + " left)";
    setTimeout(tick, 1000);
  }
  tick();
})();

// Installable as an app: the service worker keeps the styles, script and an offline page.
if ("serviceWorker" in navigator && window.isSecureContext) {
  window.addEventListener("load", function () {
    navigator.serviceWorker.register("/sw.js").catch(function () { /* works without it */ });
  });
}

// The candle chart: time labels in the reader's zone, and a candle's figures on hover or
// with the arrow keys once the chart has focus (the chart carries them in data-candles).
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var svg = document.querySelector("svg.candles[data-candles]");
  if (!svg || !window.Intl) return;
  var tf = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var df = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  var full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  svg.querySelectorAll("text[data-at]").forEach(function (t) {
    var d = new Date(t.getAttribute("data-at"));
    if (!isNaN(d.getTime())) t.textContent = (t.getAttribute("data-fmt") === "date" ? df : tf).format(d);
  });
  var rows = svg.getAttribute("data-candles").split("|").filter(Boolean).map(function (r) {
    return r.split(";");
  });
  if (!rows.length) return;
  var from = Number(svg.getAttribute("data-from")), len = Number(svg.getAttribute("data-len"));
  var slotW = Number(svg.getAttribute("data-plot")) / Number(svg.getAttribute("data-slots"));
  var width = svg.viewBox.baseVal.width || 760;
  var out = document.getElementById("chart-readout");
  var cross = svg.querySelector(".crosshair");
  var idx = rows.length - 1;
  function xOf(r) { return (Number(r[0]) - from) / len * slotW + slotW / 2; }
  function show(i) {
    if (i < 0 || i >= rows.length) return;
    idx = i;
    var r = rows[i], x = xOf(r);
    if (cross) {
      cross.setAttribute("x1", x); cross.setAttribute("x2", x);
      cross.setAttribute("visibility", "visible");
    }
    if (out) {
      out.textContent = full.format(new Date(Number(r[0]))) + " · open " + priceText(r[1]) +
        " · high " + priceText(r[2]) + " · low " + priceText(r[3]) + " · close " + priceText(r[4]);
    }
  }
  svg.addEventListener("mousemove", function (e) {
    var box = svg.getBoundingClientRect();
    var vx = (e.clientX - box.left) / box.width * width, best = 0, dist = Infinity;
    rows.forEach(function (r, i) {
      var d = Math.abs(xOf(r) - vx);
      if (d < dist) { dist = d; best = i; }
    });
    show(best);
  });
  svg.addEventListener("mouseleave", function () {
    if (cross && document.activeElement !== svg) cross.setAttribute("visibility", "hidden");
  });
  svg.addEventListener("focus", function () { show(idx); });
  svg.addEventListener("keydown", function (e) {
    var next = { ArrowLeft: idx - 1, ArrowRight: idx + 1, Home: 0, End: rows.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    show(Math.max(0, Math.min(rows.length - 1, next)));
  });
});

// "Max" fills in the most that can leave with its fee (the server computes it per asset).
(function () {
  "use strict";
  document.querySelectorAll("button[data-max-of]").forEach(function (b) {
    var select = document.getElementById(b.getAttribute("data-max-of"));
    var into = document.getElementById(b.getAttribute("data-max-into"));
    if (!select || !into) return;
    function sync() {
      var o = select.options[select.selectedIndex];
      var max = o && o.getAttribute("data-max");
      b.hidden = !max || !/[1-9]/.test(max);
    }
    select.addEventListener("change", sync);
    sync();
    b.addEventListener("click", function () {
      var o = select.options[select.selectedIndex];
      if (o && o.getAttribute("data-max")) { into.value = o.getAttribute("data-max"); into.focus(); }
    });
  });
})();
