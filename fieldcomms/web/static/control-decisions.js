/* The control room's decision log (JESIP): read it, add to it, and rule an entry through by superseding it.
   Entries are never edited or deleted, here or anywhere. A panel for control.js through FC.panels:
   {start(api), reload(), event(type, data), stop()}; control.js owns the token, the API calls and the stream.
   Everything from the server enters the DOM as text. */
(function () {
  "use strict";

  var FC = (window.fieldcomms = window.fieldcomms || {});
  var api = null;
  var supersedes = null;
  var root = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function field(form, id, label, max, required) {
    form.appendChild(el("label", {"for": id}, label));
    var area = el("textarea", {id: id, rows: "2", maxlength: String(max)});
    if (required) area.required = true;
    form.appendChild(area);
    return area;
  }

  function build() {
    if (root) return;
    var host = document.getElementById("control-panels");
    if (!host) return;
    root = el("section", {"class": "panel", id: "decisions-panel", "aria-labelledby": "decisions-heading"});
    root.appendChild(el("h2", {id: "decisions-heading"}, "Decision log"));
    var form = el("form", {id: "decision-form", "class": "decision-form", "data-test": "decision-form"});
    field(form, "decision-text", "Decision", 2000, true);
    field(form, "decision-rationale", "Rationale", 5000, true);
    field(form, "decision-options", "Options considered (optional)", 5000, false);
    var sup = el("p", {id: "decision-supersedes", "class": "hint", hidden: ""});
    sup.appendChild(el("span", {}));
    var cancel = el("button", {type: "button", "class": "button-quiet"}, "Cancel");
    cancel.addEventListener("click", function () { setSupersedes(null); });
    sup.appendChild(cancel);
    form.appendChild(sup);
    form.appendChild(el("button", {type: "submit"}, "Log decision"));
    form.appendChild(el("p", {id: "decision-result", "class": "result", role: "status"}));
    form.addEventListener("submit", submit);
    root.appendChild(form);
    root.appendChild(el("ol", {id: "decisions", "class": "decisions", "data-test": "decisions"}));
    root.appendChild(el("p", {id: "decisions-empty", "class": "empty"}, "No decisions logged."));
    host.appendChild(root);
  }

  function setSupersedes(entry) {
    supersedes = entry ? entry.id : null;
    var note = document.getElementById("decision-supersedes");
    note.hidden = !entry;
    note.firstChild.textContent = entry ? "Rules through: \u201c" + entry.decision + "\u201d " : "";
    if (entry) document.getElementById("decision-text").focus();
  }

  function when(iso) {
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  function render(items) {
    var list = document.getElementById("decisions");
    list.textContent = "";
    var byId = {};
    items.forEach(function (d) { byId[d.id] = d; });
    // Oldest at the bottom, newest at the top, by the time each was logged (a superseded entry keeps its place).
    items.slice().sort(function (a, b) { return a.at < b.at ? 1 : a.at > b.at ? -1 : 0; }).forEach(function (d) {
      var item = el("li", {"data-id": d.id, "class": d.superseded_by ? "decision superseded" : "decision"});
      item.appendChild(el("p", {"class": "meta"}, when(d.at) + " \u00b7 " + d.by.callsign));
      var text = el(d.superseded_by ? "s" : "p", {"class": "decision-text"}, d.decision);
      item.appendChild(text);
      item.appendChild(el("p", {"class": "rationale"}, "Rationale: " + d.rationale));
      if (d.options) item.appendChild(el("p", {"class": "options"}, "Options: " + d.options));
      if (d.supersedes) {
        var old = byId[d.supersedes];
        item.appendChild(el("p", {"class": "hint"}, "Supersedes: " + (old ? old.decision : d.supersedes)));
      }
      if (d.superseded_by) {
        item.appendChild(el("p", {"class": "hint"}, "Superseded by a later entry."));
      } else {
        var button = el("button", {type: "button", "class": "button-quiet", "data-test": "supersede"}, "Supersede");
        button.addEventListener("click", function () { setSupersedes(d); });
        item.appendChild(button);
      }
      list.appendChild(item);
    });
    document.getElementById("decisions-empty").hidden = items.length > 0;
  }

  function load() {
    if (!api) return null;
    return api.call("GET", api.base + "/decisions?limit=500").then(function (page) { render(page.items || []); });
  }

  function submit(event) {
    event.preventDefault();
    var form = event.target;
    if (!form.reportValidity()) return;
    var body = {
      decision: document.getElementById("decision-text").value.trim(),
      rationale: document.getElementById("decision-rationale").value.trim()
    };
    var options = document.getElementById("decision-options").value.trim();
    if (options) body.options = options;
    if (supersedes) body.supersedes = supersedes;
    var result = document.getElementById("decision-result");
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    var key = form.dataset.key || (form.dataset.key = randomKey()); // a retry logs it once
    api.call("POST", api.base + "/decisions", body, {"Idempotency-Key": key}).then(function () {
      ["decision-text", "decision-rationale", "decision-options"].forEach(function (id) {
        document.getElementById(id).value = "";
      });
      delete form.dataset.key;
      setSupersedes(null);
      result.textContent = "Decision logged.";
      return load();
    }).catch(function (err) {
      result.textContent = "Not logged: " + err.message;
    }).then(function () { button.disabled = false; });
  }

  function randomKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return "decision-" + Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  (FC.panels = FC.panels || []).push({
    start: function (a) { api = a; build(); return load(); },
    event: function (type) { if (type === "decision") return load(); return null; },
    reload: function () { return load(); },
    stop: function () { api = null; }
  });
})();
