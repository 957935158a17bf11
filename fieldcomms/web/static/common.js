/* What the public page and the control room share: building DOM from data (text only, never markup),
   time and label formats that match the server's templates, and Leaflet helpers. */
(function () {
  "use strict";

  var FC = (window.fieldcomms = window.fieldcomms || {});

  var KINDS = {
    info: ["Information", "i"],
    warning: ["Warning", "\u26a0"],
    alert: ["Alert", "\u203c"]
  };
  var VERDICTS = {
    "false": "False",
    misleading: "Misleading",
    unproven: "Unproven",
    "true": "True",
    investigating: "Being checked",
    unverified: "Not yet checked"
  };
  var PUBLISHED = ["false", "misleading", "unproven", "true"];
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var THUMB = 320;

  /* el("p", {class: "x", "data-id": id}, "text", child, ...): attributes are set as attributes and
     children as text nodes or elements, so data from the server can never become markup. */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        node.setAttribute(name, value === true ? "" : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /* "2011-03-12T10:02:00Z" -> "12 Mar 2011, 10:02 UTC", as the templates write it. */
  function when(value) {
    if (!value) return "";
    var d = new Date(value);
    if (isNaN(d.getTime())) return String(value);
    return d.getUTCDate() + " " + MONTHS[d.getUTCMonth()] + " " + d.getUTCFullYear() + ", " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  function kindLabel(kind) { return (KINDS[kind] || [String(kind)])[0]; }
  function kindSymbol(kind) { return (KINDS[kind] || ["", "\u2022"])[1]; }
  function verdictLabel(status) { return VERDICTS[status] || String(status); }
  function isPublished(status) { return PUBLISHED.indexOf(status) >= 0; }

  function truncate(text, n) {
    text = String(text || "");
    return text.length <= n ? text : text.slice(0, n - 3).replace(/\s+\S*$/, "") + "...";
  }

  function thumbSize(photo) {
    var w = Number(photo.width) || THUMB, h = Number(photo.height) || THUMB;
    var scale = Math.min(1, THUMB / Math.max(w, h, 1));
    return [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))];
  }

  function safeId(value) { return String(value).replace(/[^A-Za-z0-9_-]/g, "_"); }

  /* The same structure as templates/_update.html. */
  function updateItem(u) {
    var id = safeId(u.id);
    var kind = KINDS[u.kind] ? u.kind : "info";
    var title = el("h3", {class: "update-title", id: "update-" + id + "-title"},
      el("span", {class: "kind-badge kind-" + kind},
        el("span", {class: "kind-symbol", "aria-hidden": "true"}, kindSymbol(kind)), " " + kindLabel(kind)),
      el("time", {datetime: u.captured_at}, when(u.captured_at)));
    var article = el("article", {"aria-labelledby": "update-" + id + "-title"}, title,
      el("p", {class: "update-text"}, u.text));
    var photos = u.photos || [];
    if (photos.length) {
      var list = el("ul", {class: "photos"});
      photos.forEach(function (p, i) {
        var size = thumbSize(p);
        list.appendChild(el("li", null, el("a", {href: p.url}, el("img", {
          src: p.thumb_url, width: size[0], height: size[1], loading: "lazy",
          alt: "Photo " + (i + 1) + " of " + photos.length + " with the update: " + truncate(u.text, 90)
        }))));
      });
      article.appendChild(list);
    }
    var meta = el("p", {class: "update-meta"});
    if (u.author && u.author.callsign) meta.appendChild(el("span", null, "From " + u.author.callsign));
    if (u.zones && u.zones.length) {
      var zones = el("span", {class: "zones"}, "In: ");
      u.zones.forEach(function (z, i) {
        zones.appendChild(el("span", {class: "zone"}, z.name));
        if (i < u.zones.length - 1) zones.appendChild(document.createTextNode(", "));
      });
      meta.appendChild(zones);
    }
    if (u.location) {
      meta.appendChild(el("span", {class: "where"},
        "Location: " + Number(u.location.lat).toFixed(5) + ", " + Number(u.location.lon).toFixed(5)));
    }
    if (u.reply_to) meta.appendChild(el("a", {href: "#update-" + safeId(u.reply_to)}, "In reply to an earlier update"));
    article.appendChild(meta);
    return el("li", {
      class: "update kind-" + kind, id: "update-" + id, "data-id": u.id, "data-seq": u.seq, "data-kind": kind,
      "data-lat": u.location ? u.location.lat : null, "data-lon": u.location ? u.location.lon : null
    }, article);
  }

  /* ---- Leaflet ---------------------------------------------------------------------------------- */

  var ZONE_COLOURS = {
    "demonstration-area": "#166534",
    "march-route": "#1d4ed8",
    cordon: "#b91c1c",
    rendezvous: "#7c3aed",
    hazard: "#9a3412",
    other: "#4b5563"
  };

  function zoneStyle(kind) {
    var colour = ZONE_COLOURS[kind] || ZONE_COLOURS.other;
    return {
      color: colour, weight: kind === "march-route" ? 5 : 2, opacity: 0.9,
      fillColor: colour, fillOpacity: kind === "hazard" || kind === "cordon" ? 0.18 : 0.1,
      dashArray: kind === "cordon" ? "8 6" : null
    };
  }

  /* Sets data attributes on a vector layer's SVG element whenever it is (re)drawn, so that tests and
     assistive tools can find what the map shows. */
  function tagPath(layer, attrs) {
    function apply() {
      var node = layer.getElement && layer.getElement();
      if (!node) return;
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    }
    layer.on("add", apply);
    apply();
  }

  function tileLayer(map, url, container) {
    if (!url) {
      container.classList.add("no-tiles");
      return null;
    }
    var osm = /openstreetmap\.org/.test(url);
    var layer = window.L.tileLayer(url, {
      maxZoom: 19,
      referrerPolicy: "strict-origin", // tile servers ask for the origin; never the page's path
      attribution: osm ? "&copy; <a href=\"https://www.openstreetmap.org/copyright\">OpenStreetMap</a> contributors" : ""
    });
    // Cut off from the tile server, the map keeps its features on a plain background.
    layer.on("tileerror", function () { container.classList.add("no-tiles"); });
    layer.addTo(map);
    return layer;
  }

  function updateIcon(u) {
    var kind = KINDS[u.kind] ? u.kind : "info";
    var node = el("span", {
      class: "fc-marker fc-update kind-" + kind, "data-layer": "updates", "data-id": u.id, "data-kind": kind,
      title: kindLabel(kind) + ": " + truncate(u.text, 60)
    }, kindSymbol(kind));
    return window.L.divIcon({className: "fc-icon", html: node, iconSize: [24, 24], iconAnchor: [12, 12]});
  }

  function zoneLayer(feature, onEach) {
    var props = feature.properties || {};
    return window.L.geoJSON(feature, {
      style: function () { return zoneStyle(props.kind); },
      pointToLayer: function (f, latlng) {
        return window.L.circle(latlng, Object.assign({radius: Number(props.buffer_m) || 25}, zoneStyle(props.kind)));
      },
      onEachFeature: function (f, layer) {
        var attrs = {"data-layer": "zones", "data-id": featureId(feature) || "", "data-kind": props.kind || ""};
        tagPath(layer, attrs);
        // A string given to Leaflet becomes HTML: names come from users, so they go in as a text node.
        layer.bindTooltip(el("span", null, String(props.name || "Zone")), {sticky: true});
        if (onEach) onEach(layer);
      }
    });
  }

  /* The map's view as a `bbox` parameter, a little larger than what shows so a small pan needs no fetch. */
  function bboxOf(map) {
    var b = map.getBounds().pad(0.25);
    var clamp = function (v, lo, hi) { return Math.min(hi, Math.max(lo, v)); };
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90), clamp(b.getEast(), -180, 180),
      clamp(b.getNorth(), -90, 90)].map(function (v) { return v.toFixed(6); }).join(",");
  }

  /* A `layer: "cluster"` feature as a count bubble; clicking it zooms to the cluster's box. */
  function clusterMarker(map, feature) {
    var p = feature.properties || {};
    var count = Number(p.count) || 0;
    var size = Math.round(30 + 10 * Math.log10(Math.max(count, 1)));
    var node = el("span", {class: "fc-cluster of-" + p.of, "data-layer": "cluster", "data-of": p.of,
      "data-count": count, title: count + " " + p.of + ": zoom in"}, String(count));
    var marker = window.L.marker([feature.geometry.coordinates[1], feature.geometry.coordinates[0]], {
      icon: window.L.divIcon({className: "fc-icon", html: node, iconSize: [size, size], iconAnchor: [size / 2, size / 2]}),
      title: count + " " + p.of + ", zoom in", keyboard: true
    });
    var b = p.bbox;
    marker.bbox = b && b.length === 4 ? window.L.latLngBounds([[b[1], b[0]], [b[3], b[2]]]) : null;
    marker.on("click", function () {
      if (marker.bbox && marker.bbox.isValid()) map.fitBounds(marker.bbox, {padding: [20, 20], maxZoom: 18});
      else map.setView(marker.getLatLng(), map.getZoom() + 2);
    });
    return marker;
  }

  /* Every feature of some layer groups (and clusters' boxes) in one bounds. */
  function boundsOf(groups, clusters) {
    var bounds = window.L.latLngBounds([]);
    groups.forEach(function (g) {
      g.eachLayer(function (l) { bounds.extend(l.getBounds ? l.getBounds() : l.getLatLng()); });
    });
    (clusters || []).forEach(function (c) { bounds.extend(c.bbox || c.getLatLng()); });
    return bounds;
  }

  function featureId(feature) {
    var p = feature.properties || {};
    if (feature.id !== undefined && feature.id !== null) return String(feature.id);
    if (p.id !== undefined && p.id !== null) return String(p.id);
    if (p.officer && p.officer.id) return String(p.officer.id);
    return null;
  }

  function configOf() {
    var node = document.getElementById("page-config");
    return node ? node.dataset : {};
  }

  FC.el = el;
  FC.when = when;
  FC.kindLabel = kindLabel;
  FC.verdictLabel = verdictLabel;
  FC.isPublished = isPublished;
  FC.truncate = truncate;
  FC.safeId = safeId;
  FC.updateItem = updateItem;
  FC.zoneStyle = zoneStyle;
  FC.zoneLayer = zoneLayer;
  FC.tagPath = tagPath;
  FC.tileLayer = tileLayer;
  FC.updateIcon = updateIcon;
  FC.featureId = featureId;
  FC.bboxOf = bboxOf;
  FC.clusterMarker = clusterMarker;
  FC.boundsOf = boundsOf;
  FC.config = configOf;
})();
