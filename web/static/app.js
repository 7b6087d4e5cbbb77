// app.js adds the few behaviours the dashboard needs on top of htmx. It is a
// file of its own because the pages' Content Security Policy allows no inline
// script (script-src 'self').
(function () {
  "use strict";

  var live = document.getElementById("live");

  // setLive shows whether the last poll reached the server.
  function setLive(state) {
    if (!live) return;
    live.classList.remove("offline", "degraded");
    if (state !== "live") live.classList.add(state);
    live.textContent = state;
  }

  // toast shows a short message that the page did not swap in (a 403).
  function toast(text) {
    var t = document.createElement("div");
    t.className = "toast";
    t.setAttribute("role", "alert");
    t.textContent = text;
    document.body.appendChild(t);
    setTimeout(function () { t.remove(); }, 6000);
  }

  // The server answers partials and actions with an HTML fragment even when
  // they fail (404 unknown job, 409 finished job, 503 store down): swap it,
  // it says what went wrong. Other error bodies (a plain-text 403) become a
  // toast.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var xhr = e.detail.xhr;
    if (xhr.status < 400) return;
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/html") === 0) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    } else {
      toast(xhr.status + ": " + (xhr.responseText || xhr.statusText).trim());
    }
  });

  document.addEventListener("htmx:afterRequest", function (e) {
    var s = e.detail.xhr ? e.detail.xhr.status : 0;
    setLive(s === 0 ? "offline" : s >= 500 ? "degraded" : "live");
  });
  document.addEventListener("htmx:sendError", function () { setLive("offline"); });
  document.addEventListener("htmx:timeout", function () { setLive("offline"); });
})();
