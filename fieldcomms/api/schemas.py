"""JSON Schemas of what the API sends and takes, for the OpenAPI document (and schemathesis)."""

from __future__ import annotations

from typing import Any

from ..domain.reports import CONTACT_MAX_CHARS
from ..domain.rumours import URL_MAX_CHARS
from ..rumours.lifecycle import CLAIM_MAX_CHARS
from .spec import PHOTOS_LIMIT, TEXT_LIMIT

TIME = {"type": "string", "format": "date-time"}
NTIME = {"type": ["string", "null"], "format": "date-time"}
WHO = {"type": "object", "required": ["id", "callsign"],
       "properties": {"id": {"type": "string"}, "callsign": {"type": "string"}}}
LOCATION_IN = {"type": "object", "required": ["lat", "lon"], "properties": {
    "lat": {"type": "number", "minimum": -90, "maximum": 90},
    "lon": {"type": "number", "minimum": -180, "maximum": 180},
    "accuracy_m": {"type": "number", "minimum": 0}}}
LOCATION_OUT = {"type": "object", "required": ["lat", "lon"], "properties": {
    **LOCATION_IN["properties"], "source": {"enum": ["device", "exif"]}}}  # type: ignore[dict-item]
NLOCATION_OUT = {"oneOf": [{"type": "null"}, LOCATION_OUT]}
CHECKS = {"type": "object", "additionalProperties": False, "description": "the proposer's legal checks on an "
          "answer; any true one makes approval ask for confirm_legal", "properties": {
              "names_person": {"type": "boolean"}, "mentions_minor": {"type": "boolean"},
              "active_proceedings": {"type": "boolean"}}}
REPLY = {"status": {"enum": ["pending", "sent", "failed", "not-configured"]}, "at": TIME,
         "error": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}}}},
    "User": {"type": "object", "required": ["id", "name", "callsign", "role"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "callsign": {"type": "string"},
        "role": {"enum": ["officer", "control", "admin"]}}},
    "UserCreate": {"type": "object", "required": ["name", "callsign", "role"], "additionalProperties": False,
                   "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                  "callsign": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"},
                                  "role": {"enum": ["officer", "control", "admin"]}}},
    "Event": {"type": "object", "required": ["tag", "title", "description", "status", "starts_at", "ends_at",
                                             "created_at", "seq"], "properties": {
        "tag": {"type": "string", "pattern": "^[a-z0-9_]{2,64}$"}, "title": {"type": "string"},
        "description": {"type": "string"}, "status": {"enum": ["planned", "live", "closed"]},
        "starts_at": NTIME, "ends_at": NTIME, "created_at": TIME, "seq": {"type": "integer"},
        "retain_until": {**NTIME, "description": "Until when the event's personal data is kept: ends_at, or the "
                         "closing time, plus the setting retention_days, unless control set it (never earlier "
                         "than now). Then `purge --due` and the server's daily check erase it."},
        "closed_at": {**TIME, "description": "When the event was closed (an extension; only once closed)."},
        "purged_at": {**TIME, "description": "When its personal data was purged (an extension; only once purged)."},
        "answer_approval": {"enum": ["none", "second-control"], "description": "second-control: every answer to a "
                            "rumour waits for a second control user's approval; default from the setting"}}},
    "EventCreate": {"type": "object", "required": ["tag", "title"], "additionalProperties": False, "properties": {
        "tag": {"type": "string", "description": "[a-z0-9_]{2,64}; a leading # and capitals are normalised"},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 5000},
        "starts_at": TIME, "ends_at": TIME, "status": {"enum": ["planned", "live", "closed"]},
        "retain_until": {**TIME, "description": "Not earlier than now (422); derived when absent."},
        "answer_approval": {"enum": ["none", "second-control"]}}},
    "EventPatch": {"type": "object", "additionalProperties": False, "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 5000},
        "starts_at": TIME, "ends_at": TIME, "status": {"enum": ["planned", "live", "closed"]},
        "retain_until": {**TIME, "description": "Not earlier than now (422); once set, no longer derived."},
        "answer_approval": {"enum": ["none", "second-control"]}}},
    "LocationIn": LOCATION_IN,
    "Location": LOCATION_OUT,
    "PhotoRef": {"type": "object", "required": ["id", "url", "thumb_url", "width", "height"], "properties": {
        "id": {"type": "string"}, "url": {"type": "string"}, "thumb_url": {"type": "string"},
        "width": {"type": "integer"}, "height": {"type": "integer"}}},
    "Photo": {"type": "object", "required": ["id", "url", "thumb_url", "width", "height", "content_type",
                                             "taken_at", "location"], "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256 of the uploaded bytes"},
        "url": {"type": "string"}, "thumb_url": {"type": "string"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "content_type": {"enum": ["image/jpeg", "image/png"]},
        "taken_at": {**NTIME, "description": "EXIF DateTimeOriginal, in UTC"},
        "location": {**NLOCATION_OUT, "description": "EXIF GPS position (source: exif), or null"},
        "original": {"type": "object", "description": "Control only: the uploaded bytes as kept (evidence).",
                     "required": ["sha256", "bytes", "content_type"], "properties": {
                         "sha256": {"type": "string"}, "bytes": {"type": "integer"}, "content_type": {"type": "string"},
                         "purged_at": {**TIME, "description": "Set once a retention purge erased the original."}}}}},
    "UpdateCreate": {"type": "object", "required": ["text"], "additionalProperties": False, "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT},
        "location": {"$ref": "#/components/schemas/LocationIn"},
        "visibility": {"enum": ["internal", "public"], "default": "internal"},
        "kind": {"enum": ["info", "warning", "alert"], "default": "info"},
        "photos": {"type": "array", "maxItems": PHOTOS_LIMIT, "items": {"type": "string"}},
        "captured_at": TIME, "reply_to": {"type": "string"}}},
    "Update": {"type": "object", "required": [
        "id", "seq", "event", "author", "text", "hashtags", "location", "visibility", "kind", "status", "photos",
        "zones", "reply_to", "amplified_by", "captured_at", "received_at"], "properties": {
        "id": {"type": "string"}, "seq": {"type": "integer"}, "event": {"type": "string"}, "author": WHO,
        "text": {"type": "string"}, "hashtags": {"type": "array", "items": {"type": "string"}},
        "location": NLOCATION_OUT, "visibility": {"enum": ["internal", "public"]},
        "kind": {"enum": ["info", "warning", "alert"]}, "status": {"enum": ["active", "retracted"]},
        "photos": {"type": "array", "items": {"$ref": "#/components/schemas/PhotoRef"}},
        "zones": {"type": "array", "items": {"type": "object", "required": ["id", "name", "kind"]}},
        "reply_to": {"type": ["string", "null"]}, "amplified_by": {"type": "array", "items": WHO},
        "captured_at": TIME, "received_at": TIME}},
    "RumourCreate": {"type": "object", "required": ["claim"], "additionalProperties": False, "properties": {
        "claim": {"type": "string", "minLength": 1, "maxLength": CLAIM_MAX_CHARS},
        "location": {"$ref": "#/components/schemas/LocationIn"},
        "source": {"type": "object", "additionalProperties": False, "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT},
            "url": {"type": "string", "format": "uri", "maxLength": URL_MAX_CHARS, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
            "seen_at": TIME, "location": {"$ref": "#/components/schemas/LocationIn"}}}}},
    "Sighting": {"oneOf": [
        {"type": "object", "required": ["report_id"], "additionalProperties": False,
         "properties": {"report_id": {"type": "string", "minLength": 1, "maxLength": 128}}},
        {"type": "object", "additionalProperties": False, "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT},
            "url": {"type": "string", "format": "uri", "maxLength": URL_MAX_CHARS, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
            "location": {"$ref": "#/components/schemas/LocationIn"}, "seen_at": TIME}}]},
    "Rebuttal": {"oneOf": [
        {"type": "object", "required": ["verdict", "update_id"], "additionalProperties": False, "properties": {
            "verdict": {"enum": ["false", "misleading", "true", "unproven"]},
            "update_id": {"type": "string", "minLength": 1, "maxLength": 128}, "checks": CHECKS}},
        {"type": "object", "required": ["verdict", "text"], "additionalProperties": False, "properties": {
            "verdict": {"enum": ["false", "misleading", "true", "unproven"]},
            "text": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT},
            "location": {"$ref": "#/components/schemas/LocationIn"},
            "photos": {"type": "array", "maxItems": PHOTOS_LIMIT, "items": {"type": "string"}}, "checks": CHECKS}}]},
    "Rumour": {"type": "object", "required": [
        "id", "seq", "event", "claim", "status", "first_seen_at", "last_seen_at", "sightings",
        "sightings_last_hour", "urgency", "rebuttals", "history"],
        "description": "The public's copy has no `sources` and no `location`, and no `by` in `history` and "
                       "`rebuttals`.", "properties": {
        "id": {"type": "string"}, "seq": {"type": "integer"}, "event": {"type": "string"},
        "claim": {"type": "string"},
        "status": {"enum": ["unverified", "investigating", "false", "misleading", "true", "unproven"]},
        "location": NLOCATION_OUT, "first_seen_at": TIME, "last_seen_at": TIME,
        "sightings": {"type": "integer", "minimum": 1}, "sightings_last_hour": {"type": "integer", "minimum": 0},
        "urgency": {"type": "number", "minimum": 0},
        "sources": {"type": "array", "description": "The newest `max_rumour_sources` (default 100) sources, in "
                    "the order they were logged; `sightings` counts every one.",
                    "items": {"type": "object", "required": ["text", "url", "seen_at", "location"],
                                               "properties": {
            "text": {"type": ["string", "null"]}, "url": {"type": ["string", "null"]}, "seen_at": TIME,
            "location": NLOCATION_OUT, "report_id": {"type": "string"}}}},
        "rebuttals": {"type": "array", "items": {"type": "object", "required": ["update_id", "verdict", "url", "at"],
                                                 "properties": {
            "update_id": {"type": "string"}, "verdict": {"enum": ["false", "misleading", "true", "unproven"]},
            "url": {"type": ["string", "null"]}, "at": TIME, "by": WHO}}},
        "history": {"type": "array", "items": {"type": "object", "required": ["at", "status"], "properties": {
            "at": TIME, "status": {"type": "string"}, "by": WHO,
            "action": {"enum": ["answer-approved", "answer-rejected"],
                       "description": "staff only: what was done with a proposed answer"},
            "verdict": {"type": "string"}, "update_id": {"type": "string"}, "proposed_by": WHO,
            "reason": {"type": "string"}}}},
        "pending_answer": {"type": "object", "description": "staff only: the answer waiting for approval",
                           "required": ["verdict", "update_id", "proposed_by", "proposed_at", "checks"],
                           "properties": {"verdict": {"enum": ["false", "misleading", "true", "unproven"]},
                                          "update_id": {"type": "string"}, "proposed_by": WHO,
                                          "proposed_at": TIME, "checks": CHECKS}}}},
    "ReportCreate": {"type": "object", "required": ["text"], "additionalProperties": False, "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT},
        "location": {"$ref": "#/components/schemas/LocationIn"},
        "contact": {"type": "string", "maxLength": CONTACT_MAX_CHARS,
                    "description": "an e-mail address (the answer is mailed to it once published), or empty"}}},
    "Report": {"type": "object", "required": ["id", "seq", "event", "text", "location", "received_at",
                                              "counted_for", "matches"],
               "description": "`contact` is present for control only.", "properties": {
        "id": {"type": "string"}, "seq": {"type": "integer"}, "event": {"type": "string"},
        "text": {"type": "string"}, "location": NLOCATION_OUT, "contact": {"type": ["string", "null"]},
        "received_at": TIME, "counted_for": {"type": "array", "items": {"type": "string"}},
        "dismissed": {"type": "boolean", "description": "An officer read it and it needs nothing more."},
        "dismissed_by": {"type": "object", "properties": {"id": {"type": "string"}, "callsign": {"type": "string"}}},
        "dismissed_at": TIME,
        "matches": {"type": "array", "items": {"type": "object", "required": ["rumour_id", "score"], "properties": {
            "rumour_id": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1}}}},
        "photos": {"type": "array", "maxItems": 2, "description": "photos sent with the report (never public)",
                   "items": {"$ref": "#/components/schemas/PhotoRef"}},
        "similar_photos": {"type": "array", "description": "earlier photos (any event) that these photos "
                           "resemble, most similar first", "items": {"type": "object",
                           "required": ["photo_id", "distance", "first_seen_at"], "properties": {
                               "photo_id": {"type": "string"}, "of": {"type": "string"},
                               "distance": {"type": "integer", "minimum": 0},
                               "first_seen_at": TIME}}},
        "reply": {"type": ["object", "null"], "description": "control only: the answer mailed to `contact` (the "
                  "latest, when counted for several rumours)", "properties": REPLY},
        "replies": {"type": "array", "description": "control only: one per rumour the report was counted for "
                    "whose verdict was mailed", "items": {"type": "object", "properties": {
                        "rumour_id": {"type": "string"}, **REPLY}}}}},
}

# ---- zones, positions, alerts, the map (issue 5) ----------------------------------------------------------

_POSITION = {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"},
             "description": "[lon, lat] (WGS 84); an altitude is accepted and dropped"}
_GEOMETRY = {"oneOf": [
    {"type": "object", "required": ["type", "coordinates"], "properties": {
        "type": {"const": "Point"}, "coordinates": _POSITION}},
    {"type": "object", "required": ["type", "coordinates"], "properties": {
        "type": {"const": "LineString"}, "coordinates": {"type": "array", "minItems": 2, "items": _POSITION}}},
    {"type": "object", "required": ["type", "coordinates"], "properties": {
        "type": {"const": "Polygon"}, "coordinates": {"type": "array", "minItems": 1, "items": {
            "type": "array", "minItems": 4, "items": _POSITION}}}},
]}
_ZONE_KIND = {"enum": ["demonstration-area", "march-route", "cordon", "rendezvous", "hazard", "other"]}
_ZONE_PROPS = {"name": {"type": "string", "minLength": 1, "maxLength": 200}, "kind": _ZONE_KIND,
               "visibility": {"enum": ["public", "internal"]},
               "buffer_m": {"type": "number", "minimum": 0, "maximum": 50000}}
_POINT_GEOMETRY = {"type": "object", "required": ["type", "coordinates"], "properties": {
    "type": {"const": "Point"}, "coordinates": _POSITION}}
_TRACK_POINT = {"type": "object", "required": ["lat", "lon", "at"], "properties": {
    "lat": {"type": "number"}, "lon": {"type": "number"}, "accuracy_m": {"type": "number"}, "at": TIME}}

_ACTIVE = ("Minutes the alert stays live on its area (0 to 1440, default 0): meanwhile an officer whose newly "
           "reported fresh position lies inside the circle, and who is not a recipient yet, becomes one at once "
           "(the stream and a push bring them the alert; their recipient entry carries `added_at`).")
_ACK_WITHIN = ("Seconds a recipient has to acknowledge (30 to 3600, optional): one who has not acknowledged that "
               "long after becoming a recipient is reported to control once, as the stream's `alert-overdue`, "
               "and marked `overdue: true`.")
_RECIPIENT = {"type": "object", "required": ["id", "callsign"], "properties": {
    "id": {"type": "string"}, "callsign": {"type": "string"},
    "added_at": {**TIME, "description": "Joined the live alert after it was sent (walked into its area)."},
    "acked_at": {**TIME, "description": "Acknowledged then (control, and the recipient themself, see it)."},
    "overdue": {"type": "boolean", "description": "Not acknowledged within `ack_within_s`: reported to control "
                                                  "(control only)."},
    "overdue_at": {**TIME, "description": "When it was reported (control only)."}}}

SCHEMAS.update({
    "ZoneCreate": {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
        "type": {"const": "Feature"}, "geometry": _GEOMETRY,
        "properties": {"type": "object", "required": ["name", "kind"], "properties": _ZONE_PROPS}}},
    "ZoneFeature": {"type": "object", "required": ["type", "id", "geometry", "properties"], "properties": {
        "type": {"const": "Feature"}, "id": {"type": "string"}, "geometry": _GEOMETRY,
        "properties": {"type": "object", "required": ["name", "kind", "visibility", "buffer_m", "event", "seq"],
                       "properties": {**_ZONE_PROPS, "event": {"type": "string"}, "seq": {"type": "integer"},
                                      "created_at": TIME, "deleted": {"type": "boolean"}}}}},
    "ZoneCollection": {"type": "object", "required": ["type", "features"], "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {"type": "array", "items": {"$ref": "#/components/schemas/ZoneFeature"}}}},
    "PositionReport": {"type": "object", "required": ["lat", "lon"], "additionalProperties": False, "properties": {
        **LOCATION_IN["properties"], "at": TIME}},  # type: ignore[dict-item]
    "OfficerPosition": {"type": "object", "required": ["officer", "location", "at", "stale"], "properties": {
        "id": {"type": "string"}, "seq": {"type": "integer"}, "event": {"type": "string"}, "officer": WHO,
        "location": LOCATION_OUT, "at": TIME, "stale": {"type": "boolean"},
        "track": {"type": "array", "items": _TRACK_POINT}}},
    "NearbyOfficer": {"type": "object", "required": ["officer", "location", "at", "distance_m"], "properties": {
        "officer": WHO, "location": LOCATION_OUT, "at": TIME, "distance_m": {"type": "number", "minimum": 0}}},
    "AlertCreate": {"type": "object", "required": ["text", "location", "radius_m"], "additionalProperties": False,
                    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT},
                                   "location": {"$ref": "#/components/schemas/LocationIn"},
                                   "radius_m": {"type": "number", "exclusiveMinimum": 0, "maximum": 50000},
                                   "active_minutes": {"type": "integer", "minimum": 0, "maximum": 1440,
                                                      "default": 0, "description": _ACTIVE},
                                   "ack_within_s": {"type": ["integer", "null"], "minimum": 30, "maximum": 3600,
                                                    "description": _ACK_WITHIN}}},
    "Alert": {"type": "object", "required": ["id", "recipients"],
              "description": "Recipients see it without `acks`.", "properties": {
        "id": {"type": "string"}, "seq": {"type": "integer"}, "event": {"type": "string"},
        "text": {"type": "string"}, "location": LOCATION_IN, "radius_m": {"type": "number"}, "by": WHO,
        "recipients": {"type": "array", "items": _RECIPIENT}, "created_at": TIME,
        "active_minutes": {"type": "integer", "minimum": 0, "maximum": 1440},
        "active_until": {**TIME, "description": "When the alert stops taking in officers who walk into its "
                                                "area; absent when `active_minutes` is 0."},
        "ack_within_s": {"type": "integer", "minimum": 30, "maximum": 3600},
        "acks": {"type": "array", "items": {"type": "object", "required": ["id", "callsign", "at"], "properties": {
            "id": {"type": "string"}, "callsign": {"type": "string"}, "at": TIME}}}}},
    "PushKey": {"type": "object", "required": ["public_key"], "properties": {
        "public_key": {"type": "string", "pattern": "^[A-Za-z0-9_-]{87}$",
                       "description": "The VAPID public key: an uncompressed P-256 point, base64url"}}},
    "PushSubscriptionIn": {"type": "object", "required": ["endpoint", "keys"], "additionalProperties": False,
                           "properties": {
        "endpoint": {"type": "string", "format": "uri", "maxLength": 2048},
        "expirationTime": {"type": ["number", "null"], "description": "Sent by browsers; ignored"},
        "keys": {"type": "object", "required": ["p256dh", "auth"], "additionalProperties": False, "properties": {
            "p256dh": {"type": "string", "description": "The handset's P-256 public key (65 bytes), base64url"},
            "auth": {"type": "string", "description": "The 16-byte authentication secret, base64url"}}}}},
    "PushSubscription": {"type": "object", "required": ["id", "endpoint"], "properties": {
        "id": {"type": "string"}, "endpoint": {"type": "string"}}},
    "MapCollection": {"type": "object", "required": ["type", "features"], "properties": {
        "type": {"const": "FeatureCollection"}, "last_seq": {"type": "integer"},
        "features": {"type": "array", "items": {"type": "object", "required": ["type", "geometry", "properties"],
                                                "properties": {
            "type": {"const": "Feature"}, "id": {"type": "string"}, "geometry": _GEOMETRY,
            "properties": {"type": "object", "required": ["layer"], "properties": {
                "layer": {"enum": ["updates", "rumours", "zones", "officers", "cluster"]},
                "of": {"enum": ["updates", "rumours", "officers"]}, "count": {"type": "integer", "minimum": 2},
                "bbox": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}}}}}}}}},
})
