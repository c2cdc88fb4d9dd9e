// The console's only script: served from the binary, nothing from the network. A section with
// `data-refresh` is fetched again every few seconds (server-rendered, escaped HTML) and swapped in,
// so the overview stays live without reloading the page.
"use strict";
(function () {
  const every = 3000;
  function refresh(section) {
    fetch(section.dataset.refresh, { credentials: "same-origin", headers: { "accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        const next = document.createElement("div");
        next.innerHTML = html;
        const fresh = next.querySelector("#" + section.id);
        if (fresh) { section.replaceWith(fresh); watch(fresh); }
      })
      .catch(function () { setTimeout(function () { refresh(section); }, every); });
  }
  function watch(section) { setTimeout(function () { refresh(section); }, every); }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(watch);
  });
})();
