/* The control room: the photos sent with a report from the public, and beside them the photos seen before
   (earlier uploads that look the same: "this picture was already posted at 10:02").

   These photos are never public, so an <img src> cannot load them (it cannot send the token): each is fetched
   with this tab's token and shown from a data: URL (the pages' CSP allows data: images, not blob:).
   It uses control.js's hooks only: FC.control.call/token-bearing fetch and the "fieldcomms:report" DOM event. */
(function () {
  "use strict";

  var FC = window.fieldcomms;

  function token() { return sessionStorage.getItem("fieldcomms.token"); }

  function thumb(url, alt) {
    var img = FC.el("img", {alt: alt, width: "96", height: "72", loading: "lazy", class: "report-photo"});
    fetch(url, {headers: {Authorization: "Bearer " + token()}, cache: "no-store"}).then(function (resp) {
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      return resp.blob();
    }).then(function (blob) {
      var reader = new FileReader();
      reader.onload = function () { img.src = String(reader.result); };
      reader.readAsDataURL(blob);
    }).catch(function () { img.alt = alt + " (cannot be loaded)"; });
    return img;
  }

  function seenBefore(match) {
    var node = FC.el("span", {class: "seen-before", "data-photo-id": match.photo_id},
      thumb("/media/" + encodeURIComponent(match.photo_id) + "/thumb", "The photo seen before"),
      FC.el("span", {class: "meta"}, "Seen before: first uploaded " + FC.when(match.first_seen_at) +
        " (distance " + match.distance + " of 256)"));
    return node;
  }

  document.addEventListener("fieldcomms:report", function (event) {
    var rep = event.detail.report, node = event.detail.node;
    if (!rep.photos || !rep.photos.length) return;
    var row = FC.el("span", {class: "report-photos"});
    rep.photos.forEach(function (p, i) {
      row.appendChild(thumb(p.thumb_url, "Photo " + (i + 1) + " sent with the report"));
    });
    node.appendChild(row);
    (rep.similar_photos || []).forEach(function (match) { node.appendChild(seenBefore(match)); });
  });
})();
