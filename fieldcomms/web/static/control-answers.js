/* The control room's panel of answers waiting for a second pair of eyes (events with
   answer_approval = second-control). Listed first, with the proposer's legal checks and the answer's text;
   one click approves (confirming the legal checks when the proposer flagged any) or rejects (with the reason
   typed beside it). The proposer cannot approve their own answer: the server refuses, and the button says so.

   It uses control.js's hooks only: FC.control.call (the API with this tab's token), FC.control.me, and the
   DOM events "fieldcomms:ready" and "fieldcomms:stream". Everything from the server enters the DOM as text. */
(function () {
  "use strict";

  var FC = window.fieldcomms;
  var $ = function (id) { return document.getElementById(id); };
  var CHECK_NAMES = {
    names_person: "Names a person",
    mentions_minor: "Mentions a child",
    active_proceedings: "Active legal proceedings"
  };
  var timer = null;
  var texts = {};  // update id -> its text, fetched once

  function api() { return FC.control.call.apply(null, arguments); }

  function rumoursUrl() { return "/api/v1/events/" + encodeURIComponent(FC.config().tag) + "/rumours?limit=500"; }

  function updateText(id) {
    if (texts[id] !== undefined) return Promise.resolve(texts[id]);
    return api("GET", "/api/v1/updates/" + encodeURIComponent(id)).then(function (u) {
      texts[id] = u.text;
      return u.text;
    }).catch(function () { return "(the answer's update cannot be read)"; });
  }

  function flagged(checks) {
    return Object.keys(CHECK_NAMES).filter(function (k) { return checks && checks[k]; });
  }

  function act(rumour, path, body, node) {
    var buttons = node.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    return api("POST", "/api/v1/rumours/" + encodeURIComponent(rumour.id) + "/answer/" + path, body)
      .then(function () {
        $("answers-result").textContent = (path === "approve" ? "Published: " : "Rejected: ") +
          FC.truncate(rumour.claim, 80);
        load();
      })
      .catch(function (err) {
        buttons.forEach(function (b) { b.disabled = false; });
        node.querySelector(".answer-error").textContent = err.message;
      });
  }

  function item(rumour, text) {
    var pending = rumour.pending_answer;
    var me = FC.control.me || {};
    var mine = pending.proposed_by && pending.proposed_by.id === me.id;
    var flags = flagged(pending.checks);
    var node = FC.el("li", {"data-rumour-id": rumour.id, "data-verdict": pending.verdict},
      FC.el("span", {class: "claim-text"}, rumour.claim),
      FC.el("span", {class: "verdict verdict-" + pending.verdict}, "Proposed: " + FC.verdictLabel(pending.verdict)),
      FC.el("span", {class: "answer-text"}, text),
      FC.el("span", {class: "meta"}, "by " + (pending.proposed_by ? pending.proposed_by.callsign : "?") + ", " +
        FC.when(pending.proposed_at)));
    var checks = FC.el("span", {class: "checks"});
    if (flags.length) {
      flags.forEach(function (k) { checks.appendChild(FC.el("span", {class: "check-flag", "data-check": k}, CHECK_NAMES[k])); });
    } else {
      checks.appendChild(FC.el("span", {class: "check-clear"}, "No legal check flagged"));
    }
    node.appendChild(checks);
    var approve = FC.el("button", {type: "button", class: "approve"},
      mine ? "Proposed by you: another control user approves" : flags.length ? "Legal checks confirmed: publish" : "Approve and publish");
    approve.disabled = Boolean(mine);
    approve.addEventListener("click", function () {
      act(rumour, "approve", flags.length ? {confirm_legal: true} : {}, node);
    });
    var reason = FC.el("input", {type: "text", class: "reason", maxlength: "500", placeholder: "Reason for rejecting",
      "aria-label": "Reason for rejecting this answer"});
    var reject = FC.el("button", {type: "button", class: "button-quiet reject"}, "Reject");
    reject.addEventListener("click", function () {
      var why = reason.value.trim();
      if (!why) { reason.focus(); node.querySelector(".answer-error").textContent = "Give a reason to reject."; return; }
      act(rumour, "reject", {reason: why}, node);
    });
    node.appendChild(FC.el("span", {class: "row buttons"}, approve, reason, reject));
    node.appendChild(FC.el("span", {class: "answer-error error", role: "alert"}));
    return node;
  }

  function load() {
    return api("GET", rumoursUrl()).then(function (page) {
      var waiting = (page.items || []).filter(function (r) { return r.pending_answer; });
      waiting.sort(function (a, b) { return a.pending_answer.proposed_at < b.pending_answer.proposed_at ? -1 : 1; });
      return Promise.all(waiting.map(function (r) { return updateText(r.pending_answer.update_id); }))
        .then(function (textsInOrder) {
          // Items already shown stay as they are (a reason being typed, a button about to be clicked); only
          // answers that arrived or left change the list.
          var list = $("pending-answers");
          var shown = {};
          Array.prototype.slice.call(list.children).forEach(function (node) { shown[node.dataset.key] = node; });
          waiting.forEach(function (r, i) {
            var key = r.id + "|" + r.pending_answer.proposed_at + "|" + r.pending_answer.update_id;
            var node = shown[key] || item(r, textsInOrder[i]);
            node.dataset.key = key;
            delete shown[key];
            list.appendChild(node);  // moves an existing node into order
          });
          Object.keys(shown).forEach(function (key) { shown[key].remove(); });
          $("answers-panel").hidden = waiting.length === 0;
          $("answers-panel").dataset.count = String(waiting.length);
        });
    }).catch(function () { /* the next stream event tries again */ });
  }

  document.addEventListener("fieldcomms:ready", load);
  document.addEventListener("fieldcomms:stream", function (event) {
    if (event.detail.type !== "rumour" && event.detail.type !== "reset") return;
    clearTimeout(timer);
    timer = setTimeout(load, 300);
  });
})();
