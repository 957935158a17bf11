/* The control room's alerts panel: each alert of the event with its recipients, who has acknowledged and who
   is overdue, kept live from the stream (`alert` brings the alert's new state: a recipient who walked into a
   live alert, an acknowledgement; `alert-overdue` names the recipients just reported).

   It plugs into control.js through FC.panels: {start(api), reload(), event(type, data), stop()}; control.js
   calls them and owns the token, the API calls and the stream. Server data enters the DOM as text only. */
(function () {
  "use strict";

  var FC = (window.fieldcomms = window.fieldcomms || {});
  var SHOWN = 50;
  var api = null;
  var alerts = {};

  var $ = function (id) { return document.getElementById(id); };

  function clock(value) {
    var d = new Date(value);
    if (isNaN(d.getTime())) return "";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }

  function stateOf(r) {
    if (r.acked_at) return r.overdue ? "acked-late" : "acked";
    return r.overdue ? "overdue" : "waiting";
  }

  var LABELS = {
    acked: function (r) { return "acknowledged " + clock(r.acked_at); },
    "acked-late": function (r) { return "acknowledged late, " + clock(r.acked_at); },
    overdue: function (r) { return "OVERDUE: no acknowledgement (reported " + clock(r.overdue_at) + ")"; },
    waiting: function () { return "not yet acknowledged"; }
  };

  function count(a, states) {
    return (a.recipients || []).filter(function (r) { return states.indexOf(stateOf(r)) >= 0; }).length;
  }

  function summary(a) {
    var n = (a.recipients || []).length;
    var parts = [n + " recipient" + (n === 1 ? "" : "s"), count(a, ["acked", "acked-late"]) + " acknowledged"];
    var late = count(a, ["overdue"]);
    if (late) parts.push(late + " overdue");
    return parts.join(" \u00b7 ");
  }

  function terms(a) {
    var parts = ["Sent " + clock(a.created_at) + (a.by ? " by " + a.by.callsign : ""), Math.round(a.radius_m) + " m"];
    if (a.active_until) {
      parts.push((new Date(a.active_until).getTime() > Date.now() ? "live until " : "was live until ") + clock(a.active_until));
    }
    if (a.ack_within_s) parts.push("acknowledge within " + a.ack_within_s + " s");
    return parts.join(" \u00b7 ");
  }

  function render(a) {
    var late = count(a, ["overdue"]);
    var item = FC.el("li", {"data-alert-id": a.id, class: "alert-item" + (late ? " has-overdue" : "")},
      FC.el("p", {class: "alert-text"}, FC.truncate(a.text || "", 160)),
      FC.el("p", {class: "meta"}, terms(a)),
      FC.el("p", {class: "alert-summary", "data-test": "alert-summary"}, summary(a)));
    var people = FC.el("ul", {class: "recipients", "aria-label": "Recipients"});
    (a.recipients || []).forEach(function (r) {
      var state = stateOf(r);
      var line = FC.el("li", {"data-recipient-id": r.id, "data-callsign": r.callsign, "data-state": state,
        class: "recipient state-" + state},
        FC.el("strong", null, r.callsign), " " + LABELS[state](r));
      if (r.added_at) line.appendChild(FC.el("span", {class: "meta"}, " (walked in " + clock(r.added_at) + ")"));
      people.appendChild(line);
    });
    if (!(a.recipients || []).length) people.appendChild(FC.el("li", {class: "empty"}, "No officer in the area yet."));
    item.appendChild(people);
    return item;
  }

  function draw() {
    var list = $("alerts-list");
    if (!list) return;
    var ordered = Object.keys(alerts).map(function (id) { return alerts[id]; });
    ordered.sort(function (x, y) { return String(y.created_at).localeCompare(String(x.created_at)); });
    list.textContent = "";
    ordered.slice(0, SHOWN).forEach(function (a) { list.appendChild(render(a)); });
    $("alerts-empty").hidden = ordered.length > 0;
  }

  function put(a) {
    var old = alerts[a.id];
    if (old && (old.seq || 0) > (a.seq || 0)) return; // an older state arriving late changes nothing
    alerts[a.id] = a;
    draw();
  }

  function overdue(report) {
    var a = alerts[report.id];
    if (!a) return load(); // an alert from before this page knew of it: fetch them all
    var ids = (report.overdue || []).map(function (o) { return o.id; });
    var at = new Date().toISOString();
    a.recipients = (a.recipients || []).map(function (r) {
      return ids.indexOf(r.id) >= 0 ? Object.assign({}, r, {overdue: true, overdue_at: r.overdue_at || at}) : r;
    });
    a.seq = Math.max(a.seq || 0, report.seq || 0);
    draw();
  }

  function load() {
    if (!api) return Promise.resolve();
    return api.call("GET", api.base + "/alerts?limit=" + SHOWN).then(function (page) {
      (page.items || []).forEach(put);
      draw();
    });
  }

  FC.panels = FC.panels || [];
  FC.panels.push({
    start: function (given) { api = given; return load(); },
    reload: load,
    event: function (type, data) {
      if (type === "alert") put(data);
      else if (type === "alert-overdue") overdue(data);
    },
    stop: function () { api = null; alerts = {}; draw(); }
  });

  /* Read-only, for tests: the state shown for each recipient of an alert, by callsign. */
  FC.controlAlerts = {
    states: function (id) {
      var out = {};
      ((alerts[id] || {}).recipients || []).forEach(function (r) { out[r.callsign] = stateOf(r); });
      return out;
    }
  };
})();
