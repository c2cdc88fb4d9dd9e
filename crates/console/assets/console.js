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
  // A section with `data-load` is fetched once (a slow part of a page: the page comes first).
  function load(section) {
    fetch(section.dataset.load, { credentials: "same-origin", headers: { "accept": "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        const next = document.createElement("div");
        next.innerHTML = html;
        const fresh = next.querySelector("#" + section.id);
        if (fresh) { section.replaceWith(fresh); }
      });
  }
  // Drag and drop posts the rule's own move form (the buttons a keyboard reaches do the same),
  // with the position it was dropped at; the page then shows the draft as the server has it.
  function move(form, to) {
    const body = new URLSearchParams(new FormData(form));
    body.set("to", String(to));
    fetch(form.action, { method: "POST", credentials: "same-origin", body: body })
      .then(function (r) { if (r.ok || r.redirected) { location.assign(r.url); } else { return r.text().then(function (t) { document.open(); document.write(t); document.close(); }); } });
  }
  function draggable(list) {
    let dragged = null;
    list.querySelectorAll("li.rule[draggable=true]").forEach(function (li) {
      li.addEventListener("dragstart", function (e) { dragged = li; li.classList.add("dragging"); e.dataTransfer.effectAllowed = "move"; e.dataTransfer.setData("text/plain", li.dataset.rule); });
      li.addEventListener("dragend", function () { li.classList.remove("dragging"); dragged = null; });
      li.addEventListener("dragover", function (e) { if (dragged && dragged !== li) { e.preventDefault(); li.classList.add("drop-above"); } });
      li.addEventListener("dragleave", function () { li.classList.remove("drop-above"); });
      li.addEventListener("drop", function (e) {
        e.preventDefault();
        li.classList.remove("drop-above");
        if (!dragged || dragged === li) { return; }
        const form = dragged.querySelector("form.move");
        if (form) { move(form, Number(li.dataset.index)); }
      });
    });
  }
  // A block's value is checked as it is typed: the form (its CSRF token included) is posted to
  // the textarea's `data-check`, and the compiler's words about that rule shown beside it.
  function checked(area) {
    let timer = null;
    const out = area.form.querySelector("output");
    area.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        const body = new URLSearchParams(new FormData(area.form));
        fetch(area.dataset.check, { method: "POST", credentials: "same-origin", body: body })
          .then(function (r) { return r.text(); })
          .then(function (html) { if (out) { out.innerHTML = html; } });
      }, 350);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(watch);
    document.querySelectorAll("[data-load]").forEach(load);
    document.querySelectorAll("ol.rules").forEach(draggable);
    document.querySelectorAll("textarea[data-check]").forEach(checked);
  });
})();
