// driftwatch dashboard: refresh <main> when /live says what it shows changed.
// Served from the binary; no framework. The fetched page was rendered (and
// escaped) by the server, and DOMParser runs no scripts.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var status = document.getElementById("live-status");
  if (!main || !status || !window.EventSource) return;
  var shown = document.body.getAttribute("data-fingerprint");
  var busy = false, again = false;
  function editing() {
    var a = document.activeElement;
    if (a && main.contains(a) && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) return true;
    var fields = main.querySelectorAll("form.action input[type=text], form.action input[type=date]");
    for (var i = 0; i < fields.length; i++) if (fields[i].value) return true;
    return false;
  }
  function refresh(fp) {
    if (busy || editing()) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (t) {
        var next = new DOMParser().parseFromString(t, "text/html").getElementById("main");
        if (next) {
          main.replaceChildren.apply(main, Array.prototype.slice.call(next.childNodes).map(function (n) { return document.adoptNode(n); }));
          shown = fp;
          document.body.setAttribute("data-fingerprint", fp);
          status.textContent = "live · updated " + new Date().toLocaleTimeString();
        }
      })
      .catch(function () { status.textContent = "live · refresh failed"; })
      .then(function () { busy = false; if (again) { again = false; refresh(latest); } });
  }
  var latest = shown;
  var es = new EventSource("/live");
  es.addEventListener("open", function () { status.textContent = "live"; });
  es.addEventListener("error", function () { status.textContent = "reconnecting"; });
  // Browsers allow six connections per server over HTTP/1.1: give this one back when leaving.
  window.addEventListener("pagehide", function () { es.close(); });
  es.addEventListener("change", function (e) {
    latest = e.data;
    if (e.data !== shown) refresh(e.data);
  });
})();
