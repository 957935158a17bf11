"""Settings: defaults here < the TOML file < environment (FIELDCOMMS_*) < command line.

Every setting is declared once, below, with its help text; `config/default.toml` lists the same keys
with the same defaults (a test keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# A check takes a setting's value and returns what is wrong with it (completing "must ..."), or None.
Check = Callable[[Any], str | None]

ANSWER_APPROVAL_MODES = ("none", "second-control")


def setting(default: Any, help: str, check: Check | None = None) -> Any:
    metadata = {"help": help, "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class SettingError(ValueError):
    """A setting out of its range or meaning; `load_settings` names where the value came from."""

    def __init__(self, name: str, value: Any, problem: str) -> None:
        super().__init__(f"setting {name}: {value!r} {problem}")
        self.name, self.value, self.problem = name, value, problem


def between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be from {lo:g} to {hi:g}"


def at_least(lo: float) -> Check:
    return lambda v: None if v >= lo else f"must be at least {lo:g}"


def above(lo: float) -> Check:
    return lambda v: None if v > lo else f"must be more than {lo:g}"


def _log_level(value: str) -> str | None:
    return None if value.upper() in LOG_LEVELS else "must be one of " + ", ".join(LOG_LEVELS)


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _http_url_or_empty(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    return None if parts.scheme in ("http", "https") and parts.netloc else "must be an http(s):// URL, or empty"


def _answer_approval(value: str) -> str | None:
    return None if value in ANSWER_APPROVAL_MODES else "must be one of " + ", ".join(ANSWER_APPROVAL_MODES)


def _smtp_url(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        return "has a bad port"
    return None if parts.scheme in ("smtp", "smtps") and parts.hostname else \
        "must be smtp://host:port or smtps://host:port, or empty"


def _tile_url(value: str) -> str | None:
    if not value or (value.startswith("/") and not value.startswith("//")):
        return None  # no tiles, or tiles from this server
    return _http_url_or_empty(value)


def _cap_sender(value: str) -> str | None:
    # CAP 1.2 s3.2.1: sender "MUST NOT include spaces, commas or restricted characters (< and &)".
    return "must be non-empty without spaces, commas, '<' or '&' (CAP 1.2)" if (
        not value or any(c.isspace() or c in ",<&" for c in value)) else None


def _addresses(value: list[str]) -> str | None:
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return f"must list IP addresses or networks; {entry!r} is neither"
    return None


def _push_contact(value: str) -> str | None:
    # RFC 8292 s2.1: `sub` is a mailto: or https: URI at which the push service can reach the sender.
    if value.startswith("mailto:") and "@" in value and not any(c.isspace() for c in value):
        return None
    parts = urlsplit(value)
    return None if parts.scheme == "https" and parts.netloc else "must be a mailto: or https:// URL (RFC 8292)"


def _database_url_or_empty(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    return None if parts.scheme in ("postgresql", "postgres") and parts.netloc else (
        "must be a postgresql://user@host:port/dbname URL, or empty")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "Address to listen on.", _non_empty)
    port: int = setting(8080, "TCP port to listen on.", between(1, 65535))
    data_dir: str = setting("./data", "Directory for the journal, snapshots and photos; locked while serving.",
                             _non_empty)
    database_url: str = setting(
        "", "postgresql://user@host:port/dbname: keep the deployment in PostgreSQL, shared by any number of "
        "workers; empty: the embedded store in data_dir.", _database_url_or_empty)
    media_dir: str = setting("", "Directory for photos; every worker must see the same one. Empty: data_dir/media.")
    max_lag_s: float = setting(
        5.0, "PostgreSQL only: /healthz answers 503 while this worker's view lags the database by more seconds.",
        above(0))
    workers: int = setting(1, "Serving processes on one port (SO_REUSEPORT); above 1 needs database_url.",
                           between(1, 256))
    base_url: str = setting(
        "", "Public URL of this server for links in feeds and CAP, and in the handset app's sign-in links "
        "(`fieldcomms user add --qr`); empty: http://host:port.", _http_url_or_empty)
    organisation: str = setting("fieldcomms demo police", "Who publishes: the author of feeds, CAP and ClaimReview.",
                                 _non_empty)
    cap_sender: str = setting("fieldcomms@example.invalid", "CAP <sender>: a unique identifier of the publisher.",
                               _cap_sender)
    cap_expires_hours: float = setting(
        6.0, "CAP <expires> of a warning when its event has no later ends_at: this many hours after it was sent.",
        between(0.1, 24 * 366))
    max_body_bytes: int = setting(256 * 1024, "Largest JSON request body (413 beyond).", between(1024, 1 << 30))
    max_text_chars: int = setting(2000, "Longest update text, after trimming.", between(1, 1_000_000))
    max_photos_per_update: int = setting(4, "Photos one update may carry.", between(0, 100))
    max_photo_bytes: int = setting(15 * 1024 * 1024, "Largest photo file (413 beyond).", between(1024, 1 << 31))
    max_photo_pixels: int = setting(40_000_000, "Largest photo in pixels; larger is refused as a decompression bomb.",
                                    between(1, 1_000_000_000))
    stale_after_minutes: float = setting(5.0, "An officer position older than this is stale.", above(0))
    position_interval_s: int = setting(
        30, "Seconds between position reports from the handset app while the officer shares their position.",
        between(5, 3600))
    cluster_above: int = setting(500, "Map layers with more points than this in the box are clustered.", at_least(1))
    idempotency_ttl_hours: float = setting(48.0, "How long Idempotency-Key answers are kept (at least 24).",
                                          at_least(24))
    snapshot_every: int = setting(200_000, "Changes between snapshots; bounds start-up replay.", at_least(1))
    fsync: bool = setting(True, "fsync the journal before acknowledging; only benchmarks turn this off.")
    report_rate_per_minute: float = setting(6.0, "Public reports allowed per client address per minute.", above(0))
    report_burst: int = setting(5, "Public reports a client address may send at once before the rate applies.",
                                 at_least(1))
    trusted_proxies: list[str] = setting([], "Addresses whose X-Forwarded-For is believed (e.g. a load balancer).",
                                          _addresses)
    auth_failures_per_minute: float = setting(30.0, "Failed token checks allowed per client address per minute.",
                                             above(0))
    max_rumour_sources: int = setting(
        100, "Sources a rumour keeps, the newest; its sightings count every one.", at_least(1))
    max_unreviewed_reports: int = setting(
        500, "Public reports of one event waiting for an officer (not yet counted or dismissed); beyond, 429.",
        at_least(1))
    match_threshold: float = setting(0.0, "Score at which a public report matches a rumour; 0 uses the tuned default.",
                                     between(0, 1))
    tile_url: str = setting(
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "Map tiles for the pages; the pages work without them.",
        _tile_url)
    sse_buffer_bytes: int = setting(256 * 1024, "Unsent stream bytes allowed per subscriber before it is dropped.",
                                    between(1024, 1 << 30))
    sse_keepalive_s: float = setting(15.0, "Seconds between keep-alive comments on the stream.", between(0.01, 3600))
    sse_ring_size: int = setting(10_000, "Recent changes kept in memory per event for stream replay.",
                                 between(1, 10_000_000))
    sse_streams_per_user: int = setting(
        32, "Streams one user may have open at once (429 beyond); a control room may open one per screen.",
        at_least(1))
    sse_streams_per_address: int = setting(
        50, "Public streams one client address (an IPv6 /64) may have open at once (429 beyond); a venue's "
        "shared address may need more.", at_least(1))
    media_connections_per_address: int = setting(
        32, "Photo downloads one client address (an IPv6 /64) may have in progress at once (429 beyond).",
        at_least(1))
    media_send_timeout_s: float = setting(
        30.0, "Seconds a photo download may go without the client taking any of it before it is cut off.",
        between(0.1, 3600))
    header_timeout_s: float = setting(
        10.0, "Seconds a client has to send a request's headers, from connecting (or from the first byte of the "
        "next request on a kept-alive connection); slower clients are cut off (slowloris).", between(0, 3600))
    body_timeout_s: float = setting(
        60.0, "Seconds a request body may go without a byte arriving before the connection is closed.",
        between(0, 3600))
    keepalive_timeout_s: float = setting(75.0, "Seconds an idle kept-alive connection stays open.", between(0, 86400))
    shutdown_grace_s: float = setting(
        3.0, "On SIGTERM, seconds in-flight requests get to finish before they are cancelled; streams end at once.",
        between(0, 3600))
    metrics_allow: list[str] = setting([], "Addresses that may read /metrics without a token (else admin only).",
                                        _addresses)
    push_contact: str = setting(
        "mailto:fieldcomms@example.invalid", "VAPID `sub` claim sent with every Web Push: a mailto: or https: URL "
        "at which the push services can reach the operator of this deployment.", _push_contact)
    push_allow_insecure_endpoints: bool = setting(
        False, "Accept push endpoints that are not https:// on a public address (loopback, private networks); "
        "for tests only: otherwise the server could be used to reach internal hosts.")
    push_concurrency: int = setting(32, "Pushes in flight at once (the sending pool's bound).", between(1, 1000))
    push_timeout_s: float = setting(10.0, "Seconds a push service has to answer one push.", between(0.1, 300))
    retention_days: float = setting(
        90.0, "Days an event's personal data (positions, reports' contacts, original photos) is kept after its "
        "ends_at, or after it closed; then `purge --due` (and the server, daily) erases it.", between(0, 36500))
    purge_check_hours: float = setting(24.0, "Hours between the server's own checks for events due for purging.",
                                       between(0.0001, 24 * 366))
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL.", _log_level)
    demo_admin: bool = setting(True, "On an empty data directory, create an admin and print its token.")
    answer_approval: str = setting(
        "none", "Default for events' answer_approval: none (an answer is public at once) or second-control (a "
        "second control user approves every answer before the public sees it).", _answer_approval)
    smtp_url: str = setting(
        "", "SMTP server for the answers sent to people who reported a rumour: smtp://host:port (STARTTLS when "
        "offered) or smtps://host:port, optionally with user:password@; empty: no mail is sent.", _smtp_url)
    mail_from: str = setting("fieldcomms@example.invalid", "From address of the answers sent to reporters.",
                             _non_empty)
    mail_retry_minutes: float = setting(60.0, "How long a reply that cannot be delivered is retried, with backoff.",
                                        between(0, 7 * 24 * 60))
    mail_lease_s: float = setting(
        60.0, "With several workers (PostgreSQL): seconds a worker's claim on a reply it is sending lasts; a claim "
        "left by a worker that died is taken over by another after it.", between(0.5, 3600))

    def __post_init__(self) -> None:
        """Every value in its range and meaning, checked once when settings are made: a bad one is a
        `SettingError` naming it, never a failure deep in the server later."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingError(f.name, value, "must be a finite number")
            check: Check | None = f.metadata.get("check")
            problem = check(value) if check is not None else None
            if problem is not None:
                raise SettingError(f.name, value, problem)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def media_path(self) -> Path:
        return Path(self.media_dir) if self.media_dir else self.data_path / "media"

    @property
    def public_base_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


ENV_PREFIX = "FIELDCOMMS_"


def _coerce(name: str, kind: Any, value: Any, source: str) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind_name == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind_name == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind_name == "float":
            return float(value)
        if kind_name.startswith("list"):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError(value)
            return [str(v) for v in value]
        return str(value)
    except ValueError:
        raise SystemExit(f"fieldcomms: setting {name} from {source}: {value!r} is not a valid {kind_name}") from None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise SystemExit(f"fieldcomms: cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SystemExit(f"fieldcomms: config file {config_file} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in known:
                raise SystemExit(f"fieldcomms: config file {config_file}: unknown setting {key!r}")
            values[key] = _coerce(key, known[key].type, value, str(config_file))
            sources[key] = f"config file {config_file}"
    for name, declared in known.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, declared.type, raw, ENV_PREFIX + name.upper())
            sources[name] = ENV_PREFIX + name.upper()
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, known[name].type, value, "the command line")
            sources[name] = "the command line"
    try:
        return Settings(**values)
    except SettingError as exc:
        source = sources.get(exc.name, "the defaults")
        raise SystemExit(f"fieldcomms: setting {exc.name} from {source}: {exc.value!r} {exc.problem}") from None


def default_toml() -> str:
    """The text of config/default.toml, generated from the declarations so that it cannot drift."""
    lines = ["# fieldcomms settings. Environment variables FIELDCOMMS_<NAME> and command-line options win.", ""]
    for f in fields(Settings):
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        lines.append(f"# {f.metadata['help']}")
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, str):
            rendered = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif isinstance(value, list):
            rendered = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        else:
            rendered = repr(value)
        lines.append(f"{f.name} = {rendered}")
        lines.append("")
    return "\n".join(lines)
