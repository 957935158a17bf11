/* The public event page, enhanced: a small map of public zones and updates, and the live stream adding new
   updates, removing retracted ones and refreshing verdicts without a reload. Without this script the page
   is complete; with it, it stays current. */
(function () {
  "use strict";

  var FC = window.fieldcomms;
  var cfg = FC.config();
  var list = document.getElementById("updates");
  var emptyNote = document.querySelector(".updates-empty");
  var status = document.getElementById("live-status");
  var verdicts = document.getElementById("verdicts");
  var verdictsEmpty = document.querySelector(".verdicts-empty");
  var paged = cfg.paged === "true";
  var map = null;
  var markers = {}; // update id -> marker
  var mapRequests = 0; // numbers the map fetches, so a late answer cannot drop a marker the stream added since
  var zones = {}; // zone id -> layer
  var updatesGroup = null;
  var zonesGroup = null;

  FC.publicPage = {stream: "closed", received: 0};

  function say(text) {
    status.textContent = text;
  }

  /* ---- the map ------------------------------------------------------------------------------------ */

  var fitted = false;
  var clusters = [];

  function initMap() {
    var container = document.getElementById("map");
    if (!container || !window.L) return;
    container.textContent = "";
    map = window.L.map(container, {scrollWheelZoom: false, worldCopyJump: true}).setView([20, 0], 2);
    FC.tileLayer(map, cfg.tileUrl, container);
    zonesGroup = window.L.layerGroup().addTo(map);
    updatesGroup = window.L.layerGroup().addTo(map);
    map.on("moveend", function () {
      if (!fitted) return;
      clearTimeout(FC.publicPage.mapTimer);
      FC.publicPage.mapTimer = setTimeout(loadMap, 300);
    });
    loadMap();
  }

  /* The public zones and updates in view; with `zoom`, a crowded layer comes back as clusters, so a phone
     never downloads a hundred thousand points. The first fetch is for the whole event, to frame it. */
  function loadMap() {
    var asked = ++mapRequests;
    var params = new URLSearchParams({layers: "updates,zones", zoom: String(Math.round(map.getZoom()))});
    if (fitted) params.set("bbox", FC.bboxOf(map));
    return fetch(cfg.mapUrl + "?" + params.toString(), {headers: {Accept: "application/geo+json, application/json"}})
      .then(function (resp) {
        if (!resp.ok) throw new Error("map " + resp.status);
        return resp.json();
      })
      .then(function (collection) {
        clusters.forEach(function (c) { updatesGroup.removeLayer(c); });
        clusters = [];
        var seen = {};
        (collection.features || []).forEach(function (f) {
          var layer = (f.properties || {}).layer;
          if (layer === "zones") addZone(f);
          else if (layer === "updates") {
            seen[FC.featureId(f)] = true;
            addMarker(Object.assign({}, f.properties, {location: lonLat(f)}));
          } else if (layer === "cluster" && f.geometry) {
            var marker = FC.clusterMarker(map, f);
            clusters.push(marker);
            updatesGroup.addLayer(marker);
          }
        });
        // A marker the stream added while this fetch was under way is newer than its answer: it stays.
        Object.keys(markers).forEach(function (id) {
          if (!seen[id] && !(markers[id].liveAt >= asked)) removeMarker(id);
        });
        if (!fitted) {
          fitted = true;
          var bounds = FC.boundsOf([zonesGroup, updatesGroup], clusters);
          if (bounds.isValid()) map.fitBounds(bounds, {padding: [16, 16], maxZoom: 16});
        }
      })
      .catch(function () {
        document.getElementById("map").setAttribute("data-error", "true");
        say("The map could not be loaded; the updates below are complete.");
      });
  }

  function lonLat(feature) {
    var g = feature.geometry;
    return g && g.type === "Point" ? {lat: g.coordinates[1], lon: g.coordinates[0]} : null;
  }

  function addZone(feature) {
    if (!feature || !feature.geometry) return;
    var id = FC.featureId(feature);
    removeZone(id);
    var layer = FC.zoneLayer(feature);
    zones[id] = layer;
    zonesGroup.addLayer(layer);
  }

  function removeZone(id) {
    if (id && zones[id]) {
      zonesGroup.removeLayer(zones[id]);
      delete zones[id];
    }
  }

  function addMarker(u) {
    if (!map) return;
    removeMarker(u.id);
    if (!u.location) return;
    var marker = window.L.marker([u.location.lat, u.location.lon], {icon: FC.updateIcon(u), keyboard: true,
      title: FC.kindLabel(u.kind) + ": " + FC.truncate(u.text, 60)});
    marker.bindPopup(FC.el("div", null,
      FC.el("span", {class: "popup-title"}, FC.kindLabel(u.kind)),
      FC.el("span", {class: "popup-meta"}, FC.when(u.captured_at)),
      FC.el("span", null, FC.truncate(u.text, 200)), " ",
      FC.el("a", {href: "#update-" + FC.safeId(u.id)}, "Read the update")));
    markers[u.id] = marker;
    updatesGroup.addLayer(marker);
  }

  function removeMarker(id) {
    if (markers[id]) {
      updatesGroup.removeLayer(markers[id]);
      delete markers[id];
    }
  }

  /* ---- the list ----------------------------------------------------------------------------------- */

  function findItem(id) {
    var items = list.querySelectorAll("li.update");
    for (var i = 0; i < items.length; i++) {
      if (items[i].getAttribute("data-id") === String(id)) return items[i];
    }
    return null;
  }

  function showUpdate(u) {
    if (u.status !== "active" || u.visibility !== "public") {
      removeUpdate(u.id);
      return;
    }
    var existing = findItem(u.id);
    if (!existing && paged) return; // an older page stays as it was; the newest page shows the new one
    var item = FC.updateItem(u);
    if (existing) existing.remove();
    // Newest (highest seq) first, as the server renders it.
    var items = list.querySelectorAll("li.update");
    var before = null;
    for (var i = 0; i < items.length; i++) {
      if (Number(items[i].getAttribute("data-seq")) < Number(u.seq)) { before = items[i]; break; }
    }
    list.insertBefore(item, before);
    if (!existing) {
      item.classList.add("is-new");
      say("New " + FC.kindLabel(u.kind).toLowerCase() + " update at " + FC.when(u.captured_at) + ".");
    }
    emptyNote.hidden = true;
    addMarker(u);
    if (markers[u.id]) markers[u.id].liveAt = mapRequests;
  }

  function removeUpdate(id) {
    var item = findItem(id);
    if (item) {
      item.remove();
      say("An update was withdrawn.");
    }
    removeMarker(id);
    emptyNote.hidden = list.querySelector("li.update") !== null;
  }

  function showVerdict(r) {
    var items = verdicts.querySelectorAll("li");
    var existing = null;
    for (var i = 0; i < items.length; i++) {
      if (items[i].getAttribute("data-rumour-id") === String(r.id)) existing = items[i];
    }
    var published = FC.isPublished(r.status) && r.rebuttals && r.rebuttals.length;
    if (!published) {
      if (existing) existing.remove();
    } else {
      var item = FC.el("li", {"data-rumour-id": r.id, "data-status": r.status},
        FC.el("span", {class: "verdict verdict-" + r.status}, FC.verdictLabel(r.status)), " ",
        FC.el("a", {class: "claim", href: "/events/" + encodeURIComponent(cfg.tag) + "/rumours#rumour-" + FC.safeId(r.id)},
          r.claim));
      if (existing) verdicts.replaceChild(item, existing);
      else {
        verdicts.insertBefore(item, verdicts.firstChild);
        say("New answer to a rumour: " + FC.verdictLabel(r.status) + ".");
      }
    }
    verdictsEmpty.hidden = verdicts.querySelector("li") !== null;
  }

  /* ---- the stream --------------------------------------------------------------------------------- */

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch (e) {
      return null;
    }
  }

  function connect() {
    if (!window.EventSource || !cfg.streamUrl) return;
    var source = new EventSource(cfg.streamUrl + "?since=" + encodeURIComponent(cfg.lastSeq || "0"));
    FC.publicPage.source = source;
    source.onopen = function () { FC.publicPage.stream = "open"; };
    source.onerror = function () { FC.publicPage.stream = "reconnecting"; }; // EventSource retries by itself
    function on(name, handler) {
      source.addEventListener(name, function (event) {
        var data = parse(event);
        FC.publicPage.received += 1;
        if (data) handler(data);
      });
    }
    on("update", showUpdate);
    on("update-retracted", function (d) { removeUpdate(d.id); });
    on("rumour", showVerdict);
    on("zone", function (f) { if (map) addZone(f); });
    on("zone-deleted", function (d) { removeZone(d.id); });
    source.addEventListener("reset", function () {
      // The gap was too old to replay: the page itself is the fresh list.
      source.close();
      window.location.reload();
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  initMap();
  connect();
})();
