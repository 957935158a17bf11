/* The control room: one map with every layer, live from the stream; the rumour queue by urgency; the newest
   public reports; alerts drawn on the map.

   The token lives only in this tab's sessionStorage and is sent as `Authorization: Bearer`. EventSource cannot
   send that header, so the stream is read with fetch() and parsed here (sse.js-style), reconnecting with
   Last-Event-ID so nothing is missed. Everything from the server enters the DOM as text. */
(function () {
  "use strict";

  var FC = window.fieldcomms;
  var L = window.L;
  var cfg = FC.config();
  var TOKEN_KEY = "fieldcomms.token";
  var API = "/api/v1/events/" + encodeURIComponent(cfg.tag);
  var STALE_MS = (Number(cfg.staleMinutes) || 5) * 60000;
  var POINT_LAYERS = ["updates", "rumours", "officers"];
  var LAYER_NAMES = {
    updates: "Updates (by kind)", rumours: "Rumours (by status)", zones: "Zones", officers: "Officers",
    alerts: "Alert areas"
  };

  var $ = function (id) { return document.getElementById(id); };
  var token = null;
  var running = false;
  var streamAbort = null;
  var lastEventId = null;
  var retryMs = 3000;
  var map = null;
  var fitted = false;
  var groups = {};
  var items = {updates: {}, rumours: {}, zones: {}, officers: {}, alerts: {}};
  var clusters = [];
  var rumourClaims = {};
  var draft = null;
  var timers = {};

  /* Panels that other scripts add to the page (control-alerts.js, ...): {start(api), reload(), event(type,
     data), stop()}, each optional. They get the API through `panelApi` and the stream's events from here. */
  var panels = FC.panels = FC.panels || [];
  function eachPanel(method, args) {
    return panels.map(function (p) { return typeof p[method] === "function" ? p[method].apply(p, args || []) : null; });
  }
  function panelApi() { return {call: call, base: API}; }

  /* ---- the API ------------------------------------------------------------------------------------ */

  function ApiError(status, body) {
    this.status = status;
    this.body = body;
    this.message = (body && (body.detail || body.title)) || "HTTP " + status;
  }

  function call(method, url, body, extraHeaders) {
    var headers = Object.assign({Authorization: "Bearer " + token, Accept: "application/json"}, extraHeaders || {});
    var init = {method: method, headers: headers, cache: "no-store"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (resp) {
      if (resp.status === 401) {
        if (running) signOut("The token is no longer valid. Sign in again.");
        throw new ApiError(401, null);
      }
      var parsed = resp.status === 204 ? Promise.resolve(null) : resp.json().catch(function () { return null; });
      return parsed.then(function (data) {
        if (!resp.ok) throw new ApiError(resp.status, data);
        return data;
      });
    });
  }

  /* Run fn (which returns a promise) after ms, once however often it is asked for meanwhile. Failures are
     shown where they matter (a 401 signs out); a background refresh that fails waits for the next one. */
  function later(name, fn, ms) {
    clearTimeout(timers[name]);
    timers[name] = setTimeout(function () { quietly(fn); }, ms);
  }

  function quietly(fn) {
    var result = fn();
    if (result && result.catch) result.catch(function () { return null; });
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function randomKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return "control-" + Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  /* ---- signing in --------------------------------------------------------------------------------- */

  function showLogin(message) {
    $("control").hidden = true;
    $("whoami").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  function signIn(candidate) {
    token = candidate;
    return call("GET", "/api/v1/me").then(function (me) {
      if (me.role !== "control" && me.role !== "admin") {
        token = null;
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("This token belongs to " + me.callsign + " (" + me.role + "); the control room needs a control token.");
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, candidate);
      $("token").value = "";
      $("login").hidden = true;
      $("control").hidden = false;
      FC.control.me = me;
      $("whoami").textContent = "Signed in as " + me.callsign + " (" + me.role + ")";
      $("whoami").hidden = false;
      $("sign-out").hidden = false;
      start();
    }).catch(function (err) {
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(err && err.status === 401 ? "That token was not accepted. Check it and try again."
        : "Could not reach the server: " + (err && err.message ? err.message : "network error") + ".");
    });
  }

  function signOut(message) {
    running = false;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (streamAbort) streamAbort.abort();
    setConnection("offline", "Not connected");
    eachPanel("stop");
    showLogin(message);
  }

  /* ---- the map ------------------------------------------------------------------------------------ */

  function initMap() {
    if (map) return;
    var container = $("map");
    map = L.map(container, {worldCopyJump: true, zoomSnap: 1}).setView([20, 0], 2);
    FC.tileLayer(map, cfg.tileUrl, container);
    var overlays = {};
    Object.keys(LAYER_NAMES).forEach(function (name) {
      groups[name] = L.layerGroup().addTo(map);
      overlays[LAYER_NAMES[name]] = groups[name];
    });
    L.control.layers(null, overlays, {collapsed: window.innerWidth < 700}).addTo(map);
    L.control.scale({imperial: false}).addTo(map);
    map.on("click", function (e) { placeAlert(e.latlng); });
    map.on("moveend", function () { if (fitted) later("map", loadMap, 300); });
  }

  function loadMap() {
    var params = new URLSearchParams({layers: "updates,rumours,zones,officers", zoom: String(Math.round(map.getZoom()))});
    if (fitted) params.set("bbox", FC.bboxOf(map));
    return call("GET", API + "/map?" + params.toString()).then(function (collection) {
      var seen = {updates: {}, rumours: {}, zones: {}, officers: {}};
      clearClusters();
      (collection.features || []).forEach(function (f) {
        var props = f.properties || {};
        if (props.layer === "cluster") {
          addCluster(f);
          return;
        }
        // Officers are known by the officer's id (a position's stream event carries it too).
        var id = props.layer === "officers" ? (props.officer || {}).id : FC.featureId(f);
        if (!seen[props.layer] || !id) return;
        seen[props.layer][id] = true;
        show(props.layer, featureData(f), f);
      });
      // What the view no longer holds (moved out, clustered, deleted) goes; alerts come from the stream only.
      Object.keys(seen).forEach(function (layer) {
        Object.keys(items[layer]).forEach(function (id) {
          if (!seen[layer][id] && !items[layer][id].live) hide(layer, id);
        });
      });
      if (!fitted) {
        fitted = true;
        fitAll();
      }
    });
  }

  function featureData(f) {
    var data = Object.assign({}, f.properties);
    delete data.layer;
    if (f.geometry && f.geometry.type === "Point") {
      data.location = Object.assign({}, data.location || {}, {lat: f.geometry.coordinates[1], lon: f.geometry.coordinates[0]});
    }
    return data;
  }

  function fitAll() {
    var bounds = FC.boundsOf(Object.keys(groups).map(function (name) { return groups[name]; }), clusters);
    if (bounds.isValid()) map.fitBounds(bounds, {padding: [24, 24], maxZoom: 17});
    else later("map", loadMap, 0);
  }

  function show(layer, data, feature) {
    if (layer === "updates") return showUpdate(data);
    if (layer === "rumours") return showRumour(data);
    if (layer === "zones") return showZone(feature || data);
    if (layer === "officers") return showOfficer(data);
    if (layer === "alerts") return showAlert(data);
  }

  function hide(layer, id) {
    var entry = items[layer][id];
    if (!entry) return;
    groups[layer].removeLayer(entry.layer);
    delete items[layer][id];
  }

  function put(layer, id, leafletLayer, data, live) {
    var old = items[layer][id];
    if (old) groups[layer].removeLayer(old.layer);
    items[layer][id] = {layer: leafletLayer, data: data, live: Boolean(live || (old && old.live))};
    groups[layer].addLayer(leafletLayer);
  }

  function popup(title, lines) {
    var box = FC.el("div", null, FC.el("span", {class: "popup-title"}, title));
    lines.forEach(function (line) {
      if (line) box.appendChild(FC.el("span", {class: "popup-meta"}, line));
    });
    return box;
  }

  function showUpdate(u, live) {
    if (!u.location || u.status === "retracted") return hide("updates", u.id);
    var existing = items.updates[u.id];
    if (existing && existing.data.seq > u.seq) return;
    var marker = L.marker([u.location.lat, u.location.lon], {icon: FC.updateIcon(u),
      title: FC.kindLabel(u.kind) + ": " + FC.truncate(u.text, 60)});
    marker.bindPopup(popup(FC.kindLabel(u.kind) + (u.visibility === "public" ? " (public)" : " (internal)"), [
      FC.when(u.captured_at) + (u.author ? " from " + u.author.callsign : ""), FC.truncate(u.text, 300)]));
    put("updates", u.id, marker, u, live);
  }

  function rumourIcon(r) {
    var status = String(r.status || "unverified");
    var node = FC.el("span", {class: "fc-marker fc-rumour status-" + status, "data-layer": "rumours",
      "data-id": r.id, "data-status": status, title: "Rumour (" + FC.verdictLabel(status) + "): " + FC.truncate(r.claim, 60)},
    FC.el("span", null, "?"));
    return L.divIcon({className: "fc-icon", html: node, iconSize: [24, 24], iconAnchor: [12, 12]});
  }

  function showRumour(r, live) {
    rumourClaims[r.id] = r.claim;
    if (!r.location) return hide("rumours", r.id);
    var marker = L.marker([r.location.lat, r.location.lon], {icon: rumourIcon(r), title: "Rumour: " + FC.truncate(r.claim, 60)});
    marker.bindPopup(popup("Rumour: " + FC.verdictLabel(r.status), [
      FC.truncate(r.claim, 300), plural(r.sightings || 0, "sighting") + ", last " + FC.when(r.last_seen_at)]));
    put("rumours", r.id, marker, r, live);
  }

  function showZone(feature, live) {
    if (!feature || !feature.geometry) return;
    var id = FC.featureId(feature);
    if (id === null) return;
    var props = feature.properties || {};
    var layer = FC.zoneLayer(feature, function (l) {
      l.bindPopup(popup(String(props.name || "Zone"), [String(props.kind || "") + (props.visibility ? ", " + props.visibility : "")]));
    });
    put("zones", id, layer, feature, live);
  }

  function officerOf(p) {
    var officer = p.officer || p.user || {};
    return {id: officer.id || p.officer_id || p.user_id || p.id, callsign: officer.callsign || p.callsign || "?"};
  }

  function locationOf(p) {
    if (p.location && isFinite(p.location.lat)) return p.location;
    if (isFinite(p.lat) && isFinite(p.lon)) return {lat: p.lat, lon: p.lon};
    return null;
  }

  function isStale(p) {
    var at = Date.parse(p.at || p.received_at || "");
    if (isNaN(at)) return Boolean(p.stale);
    return Date.now() - at > STALE_MS;
  }

  function officerIcon(officer, stale) {
    var node = FC.el("span", {class: "fc-officer-wrap", "data-layer": "officers", "data-id": officer.id,
      "data-callsign": officer.callsign, "data-stale": stale ? "true" : "false"},
    FC.el("span", {class: "fc-marker fc-officer" + (stale ? " fc-stale" : "")}, ""),
    FC.el("span", {class: "fc-callsign"}, officer.callsign));
    return L.divIcon({className: "fc-icon", html: node, iconSize: [18, 18], iconAnchor: [9, 9]});
  }

  function showOfficer(p, live) {
    var officer = officerOf(p);
    var where = locationOf(p);
    if (!officer.id || !where) return;
    var entry = items.officers[officer.id];
    if (entry && Date.parse(entry.data.at) > Date.parse(p.at)) return; // an older position arrived late
    var stale = isStale(p);
    var data = Object.assign({}, p, {officer: officer, location: where});
    if (entry) {
      // Move the same marker: the control room sees an officer walk, not blink.
      entry.layer.setLatLng([where.lat, where.lon]);
      if (entry.stale !== stale || entry.callsign !== officer.callsign) entry.layer.setIcon(officerIcon(officer, stale));
      entry.data = data;
      entry.stale = stale;
      entry.callsign = officer.callsign;
      entry.live = entry.live || Boolean(live);
      entry.layer.setPopupContent(officerPopup(data));
      return;
    }
    // Officers are drawn above everything else: where people are matters most.
    var marker = L.marker([where.lat, where.lon], {icon: officerIcon(officer, stale), title: officer.callsign,
      zIndexOffset: 1000});
    marker.bindPopup(officerPopup(data));
    put("officers", officer.id, marker, data, live);
    items.officers[officer.id].stale = stale;
    items.officers[officer.id].callsign = officer.callsign;
  }

  function officerPopup(p) {
    return popup(p.officer.callsign, ["Position at " + FC.when(p.at), isStale(p) ? "Stale: no recent position" : ""]);
  }

  function refreshStale() {
    Object.keys(items.officers).forEach(function (id) {
      var entry = items.officers[id];
      var stale = isStale(entry.data);
      if (stale !== entry.stale) {
        entry.stale = stale;
        entry.layer.setIcon(officerIcon(entry.data.officer, stale));
      }
    });
  }

  function showAlert(a) {
    var where = locationOf(a);
    if (!a.id || !where) return;
    var radius = Number(a.radius_m) || 100;
    var circle = L.circle([where.lat, where.lon], {radius: radius, color: "#b91c1c", weight: 2, fillOpacity: 0.15,
      className: "fc-alert-circle"});
    FC.tagPath(circle, {"data-layer": "alerts", "data-id": a.id});
    var recipients = (a.recipients || []).map(function (r) { return r.callsign; });
    var acks = (a.acks || []).map(function (r) { return r.callsign || r.by && r.by.callsign || r.id; });
    circle.bindTooltip(FC.el("span", null, FC.truncate(a.text || "Alert", 80)));  // text, never HTML
    circle.bindPopup(popup("Alert: " + FC.truncate(a.text || "", 200), [
      radius + " m" + (a.created_at ? ", " + FC.when(a.created_at) : ""),
      recipients.length ? "To: " + recipients.join(", ") : "No officers were in the area",
      acks.length ? "Acknowledged: " + acks.join(", ") : ""]));
    put("alerts", a.id, circle, a, true);
  }

  function clearClusters() {
    clusters.forEach(function (c) { c.group.removeLayer(c); });
    clusters = [];
  }

  function addCluster(f) {
    var group = groups[(f.properties || {}).of];
    if (!group || !f.geometry) return;
    var marker = FC.clusterMarker(map, f);
    marker.group = group;
    group.addLayer(marker);
    clusters.push(marker);
  }

  /* ---- the rumour queue and the reports --------------------------------------------------------- */

  function loadRumours() {
    return call("GET", API + "/rumours?limit=100").then(function (page) {
      var list = $("rumour-queue");
      list.textContent = "";
      (page.items || []).forEach(function (r) {
        rumourClaims[r.id] = r.claim;
        var item = FC.el("li", {"data-rumour-id": r.id, "data-status": r.status},
          FC.el("span", {class: "verdict verdict-" + r.status}, FC.verdictLabel(r.status)),
          FC.el("span", {class: "claim-text"}, r.claim),
          FC.el("span", {class: "meta"}, "Urgency " + Number(r.urgency || 0).toFixed(2) + " \u00b7 " +
            plural(r.sightings || 0, "sighting") + ", " + (r.sightings_last_hour || 0) + " in the last hour \u00b7 last " +
            FC.when(r.last_seen_at)));
        if (r.location) {
          var go = FC.el("button", {type: "button", class: "button-quiet"}, "Show on map");
          go.addEventListener("click", function () { map.setView([r.location.lat, r.location.lon], Math.max(map.getZoom(), 16)); });
          item.appendChild(go);
        }
        list.appendChild(item);
      });
      $("rumour-queue-empty").hidden = Boolean(page.items && page.items.length);
      return page;
    });
  }

  function loadAlerts() {
    // Alerts sent before this page opened: the stream only brings new ones.
    return call("GET", API + "/alerts?limit=100").then(function (page) {
      (page.items || []).forEach(showAlert);
    });
  }

  function loadReports() {
    return call("GET", API + "/reports?limit=20").then(function (page) {
      var list = $("reports");
      list.textContent = "";
      (page.items || []).forEach(function (rep) {
        var item = FC.el("li", {"data-report-id": rep.id},
          FC.el("span", {class: "report-text"}, rep.text),
          FC.el("span", {class: "meta"}, "Received " + FC.when(rep.received_at) +
            (rep.contact ? " \u00b7 contact: " + rep.contact : "") +
            (rep.reply ? " \u00b7 answer mailed: " + rep.reply.status + (rep.reply.error ? " (" + rep.reply.error + ")" : "") : "")));
        (rep.matches || []).slice(0, 3).forEach(function (m) {
          var counted = (rep.counted_for || []).indexOf(m.rumour_id) >= 0;
          var line = FC.el("span", {class: "match"}, "Resembles \u201c" + FC.truncate(rumourClaims[m.rumour_id] || m.rumour_id, 80) +
            "\u201d (score " + Number(m.score).toFixed(m.score <= 1 ? 2 : 0) + ") ");
          if (counted) line.appendChild(document.createTextNode("\u2014 counted"));
          else {
            var count = FC.el("button", {type: "button", class: "button-quiet"}, "Count as a sighting");
            count.addEventListener("click", function () {
              count.disabled = true;
              call("POST", "/api/v1/rumours/" + encodeURIComponent(m.rumour_id) + "/sightings", {report_id: rep.id},
                {"Idempotency-Key": randomKey()})
                .then(function () { quietly(loadReports); quietly(loadRumours); })
                .catch(function (err) { count.disabled = false; line.appendChild(document.createTextNode(" " + err.message)); });
            });
            line.appendChild(count);
          }
          item.appendChild(line);
        });
        list.appendChild(item);
        // Panels in their own files add to a report (control-photos.js: its photos and photos seen before).
        document.dispatchEvent(new CustomEvent("fieldcomms:report", {detail: {node: item, report: rep}}));
      });
      $("reports-empty").hidden = Boolean(page.items && page.items.length);
    });
  }

  /* ---- alerts ------------------------------------------------------------------------------------- */

  function placeAlert(latlng) {
    $("alert-lat").value = latlng.lat.toFixed(6);
    $("alert-lon").value = latlng.lng.toFixed(6);
    drawDraft();
  }

  function drawDraft() {
    var lat = parseFloat($("alert-lat").value), lon = parseFloat($("alert-lon").value);
    var radius = parseFloat($("alert-radius").value);
    if (!isFinite(lat) || !isFinite(lon) || !isFinite(radius) || radius <= 0) {
      if (draft) draft.remove();
      draft = null;
      return;
    }
    if (!draft) {
      draft = L.circle([lat, lon], {radius: radius, color: "#b91c1c", weight: 2, fillOpacity: 0.08,
        className: "fc-draft", interactive: false}).addTo(map);
    } else {
      draft.setLatLng([lat, lon]);
      draft.setRadius(radius);
    }
    $("alert-result").textContent = "Alert area: " + Math.round(radius) + " m around " + lat.toFixed(5) + ", " + lon.toFixed(5) + ".";
  }

  function sendAlert(event) {
    event.preventDefault();
    var form = $("alert-form");
    if (!form.reportValidity()) return;
    var body = {
      text: $("alert-text").value.trim(),
      location: {lat: parseFloat($("alert-lat").value), lon: parseFloat($("alert-lon").value)},
      radius_m: parseFloat($("alert-radius").value)
    };
    var active = $("alert-active"), ack = $("alert-ack");
    if (active && active.value) body.active_minutes = parseInt(active.value, 10);
    if (ack && ack.value) body.ack_within_s = parseInt(ack.value, 10);
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    var key = form.dataset.key || (form.dataset.key = randomKey()); // a retry of this alert sends it once
    call("POST", API + "/alerts", body, {"Idempotency-Key": key}).then(function (answer) {
      var names = (answer.recipients || []).map(function (r) { return r.callsign; });
      showAlert(Object.assign({}, body, answer, {created_at: new Date().toISOString()}));
      $("alert-result").textContent = names.length
        ? "Alert sent to " + names.length + " officer" + (names.length === 1 ? "" : "s") + ": " + names.join(", ") + "."
        : "Alert recorded; no officer with a fresh position is in the area.";
      $("alert-text").value = "";
      delete form.dataset.key;
      if (draft) draft.remove();
      draft = null;
    }).catch(function (err) {
      $("alert-result").textContent = "Not sent: " + err.message;
    }).then(function () { button.disabled = false; });
  }

  /* ---- the stream --------------------------------------------------------------------------------- */

  function setConnection(state, text) {
    var node = $("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  function handle(type, data) {
    FC.control.received += 1;
    // Panels in their own files (control-answers.js, ...) follow the stream through this DOM event.
    document.dispatchEvent(new CustomEvent("fieldcomms:stream", {detail: {type: type, data: data}}));
    switch (type) {
      case "update": showUpdate(data, true); break;
      case "update-retracted": hide("updates", data.id); break;
      case "rumour": showRumour(data, true); later("rumours", loadRumours, 400); break;
      case "zone": showZone(data, true); break;
      case "zone-deleted": hide("zones", String(data.id)); break;
      case "position": showOfficer(data, true); break;
      case "alert": showAlert(data); break;
      default: break;
    }
    eachPanel("event", [type, data]);
  }

  /* One SSE stream, parsed by the rules of the HTML standard: fields up to a blank line make an event. */
  function readStream(body) {
    var reader = body.pipeThrough(new TextDecoderStream()).getReader();
    var buffer = "";
    var type = "", data = [], id = null;

    function line(text) {
      if (text === "") {
        if (id !== null) lastEventId = id;
        if (type === "reset") reload();
        else if (data.length) {
          var parsed = null;
          try { parsed = JSON.parse(data.join("\n")); } catch (e) { parsed = null; }
          if (parsed) handle(type || "message", parsed);
        }
        type = "";
        data = [];
        id = null;
        return;
      }
      if (text.charAt(0) === ":") return; // keep-alive
      var colon = text.indexOf(":");
      var field = colon < 0 ? text : text.slice(0, colon);
      var value = colon < 0 ? "" : text.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id" && value.indexOf("\0") < 0) id = value;
      else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
    }

    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        FC.control.lastActivity = Date.now();
        buffer += chunk.value;
        var match;
        while ((match = /\r\n|\r|\n/.exec(buffer)) !== null) {
          if (match[0] === "\r" && match.index === buffer.length - 1) break; // "\r\n" may be split across chunks
          line(buffer.slice(0, match.index));
          buffer = buffer.slice(match.index + match[0].length);
        }
        return pump();
      });
    }
    return pump();
  }

  function connect() {
    if (!running) return;
    var ctrl = new AbortController();
    streamAbort = ctrl;
    var headers = {Authorization: "Bearer " + token, Accept: "text/event-stream"};
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    setConnection("connecting", "Connecting\u2026");
    FC.control.lastActivity = Date.now();
    fetch(API + "/stream", {headers: headers, signal: ctrl.signal, cache: "no-store"}).then(function (resp) {
      if (resp.status === 401) {
        signOut("The token is no longer valid. Sign in again.");
        return null;
      }
      if (!resp.ok || !resp.body) throw new Error("stream answered " + resp.status);
      setConnection("live", "Live");
      FC.control.stream = "open";
      return readStream(resp.body);
    }).catch(function () { /* reconnect below */ }).then(function () {
      FC.control.stream = "closed";
      if (!running || streamAbort !== ctrl) return;
      setConnection("offline", "Reconnecting\u2026");
      later("stream", connect, retryMs);
    });
  }

  function watchdog() {
    // Keep-alives come at least every 15 s; silence for longer means a dead connection the OS has not noticed.
    if (running && FC.control.stream === "open" && Date.now() - FC.control.lastActivity > 45000 && streamAbort) {
      streamAbort.abort();
    }
  }

  function reload() {
    quietly(loadRumours);
    quietly(loadMap);
    quietly(loadReports);
    quietly(loadAlerts);
    eachPanel("reload").forEach(function (p) { if (p && p.catch) p.catch(function () {}); });
  }

  function start() {
    if (running) return;
    running = true;
    initMap();
    // The lists' last_seq is where the stream starts, so nothing between the two is lost.
    loadRumours().then(function (page) {
      if (lastEventId === null && page && page.last_seq !== undefined) lastEventId = String(page.last_seq);
    }).catch(function () {
      if (lastEventId === null) lastEventId = cfg.lastSeq || null;
    }).then(function () {
      connect();
      return Promise.all([loadMap(), loadReports(), loadAlerts()].concat(eachPanel("start", [panelApi()])));
    }).then(function () {
      FC.control.ready = true;
      document.dispatchEvent(new CustomEvent("fieldcomms:ready"));
    }).catch(function (err) {
      if (err && err.status !== 401) $("alert-result").textContent = "Some data could not be loaded: " + err.message;
      FC.control.ready = true;
    });
  }

  /* ---- a hook for tests and for the curious (read-only) ------------------------------------------ */

  FC.control = {
    ready: false,
    me: null,
    call: function (method, url, body, extraHeaders) { return call(method, url, body, extraHeaders); },
    randomKey: function () { return randomKey(); },
    stream: "closed",
    received: 0,
    lastActivity: 0,
    layerCounts: function () {
      var counts = {};
      Object.keys(items).forEach(function (layer) { counts[layer] = Object.keys(items[layer]).length; });
      counts.clusters = clusters.length;
      return counts;
    },
    officerLatLng: function (idOrCallsign) {
      var ids = Object.keys(items.officers);
      for (var i = 0; i < ids.length; i++) {
        var entry = items.officers[ids[i]];
        if (ids[i] === idOrCallsign || entry.data.officer.callsign === idOrCallsign) {
          var ll = entry.layer.getLatLng();
          return {lat: ll.lat, lon: ll.lng, stale: entry.stale};
        }
      }
      return null;
    }
  };

  $("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = $("token").value.trim();
    if (value) signIn(value);
  });
  $("sign-out").addEventListener("click", function () { signOut("Signed out."); });
  $("alert-form").addEventListener("submit", sendAlert);
  $("alert-radius").addEventListener("input", drawDraft);
  $("alert-lat").addEventListener("change", drawDraft);
  $("alert-lon").addEventListener("change", drawDraft);
  $("alert-centre").addEventListener("click", function () { if (map) placeAlert(map.getCenter()); });
  $("reports-refresh").addEventListener("click", function () { quietly(loadReports); });
  setInterval(refreshStale, 30000);
  setInterval(watchdog, 5000);
  setInterval(function () { if (running) quietly(loadReports); }, 30000);

  var saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showLogin("");
})();
