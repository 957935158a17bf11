"""Services: the one composition root. Every long-lived part of a deployment, typed, built in one place.

`build_services(settings)` makes the store the settings ask for and everything that hangs off it; tests and the
command line build `Services(settings, store)` with a store of their own. `create_app(settings, services)` takes
it; HTTP modules only route. `start()` / `shutdown()` / `stop()` run the parts' lifecycles in one order.

It is also the `Resolver` that visibility rules consult about referenced items, and holds the derived,
rebuilt-on-start indexes (photo -> updates that carry it, zones and positions per event, the map's points).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from .abuse import AuthFailureLimiter
from .caller import caller_still_valid
from .config import Settings
from .domain import map as map_domain
from .domain import rumours as rumours_domain
from .domain import similar as similar_domain
from .domain.alertbook import AlertBook
from .domain.backlog import ReportBacklog
from .domain.escalation import Escalation
from .domain.positions import Positions
from .domain.public_index import PublicRumours, PublicUpdates
from .domain.purge import RetentionWorker
from .domain.subscriptions import Subscriptions
from .domain.zones import Zones
from .evidence.auditlog import AUDIT, AuditIndex
from .evidence.originals import Originals
from .evidence.signing import SigningKey
from .feeds import FeedCache
from .fingerprints import FingerprintIndex
from .idempotency import Idempotency
from .live import Broker, raise_open_files_limit
from .mail import Outbox
from .media import MediaStore
from .photo_pool import PhotoWorkers
from .push.service import PushService
from .ratelimit import DeploymentLimiter, InFlight, TokenBucketLimiter
from .rumours.matching import DEFAULT_THRESHOLD, Matcher
from .store import StoreProtocol, make_store
from .visibility import Item, Viewer, view

log = logging.getLogger(__name__)

RetractHook = Callable[[Item, Viewer], Awaitable[None]]
WIDE_REPORTS = 8


class Services:
    """Every part, typed. Built before the store opens, so that loading it fills every index."""

    def __init__(self, settings: Settings, store: StoreProtocol) -> None:
        self.settings = settings
        self.store = store
        self._photo_updates: dict[str, set[str]] = defaultdict(set)
        # Callers by token hash, for the requests to come; emptied whenever any user changes (added, edited,
        # revoked), so a revocation holds from the next request on.
        self.viewers: dict[str, Viewer] = {}
        store.on_apply(self._index_photos, {"updates", "reports"})
        # Photos seen before: every stored photo's perceptual fingerprint (records carry `_fingerprint`).
        self.fingerprints = FingerprintIndex()
        store.on_apply(self.fingerprints.on_apply, {"photos"})
        self._photo_reports: dict[str, set[str]] = defaultdict(set)
        store.on_apply(lambda coll, old, new: self.viewers.clear(), {"users"})
        store.unique_index("users", "token_hash", lambda d: None if d.get("revoked") else d.get("token_hash"))
        store.unique_index("users", "callsign", lambda d: None if d.get("revoked") else d["callsign"].lower())

        store.add_guard(caller_still_valid)  # a caller revoked while their request ran writes nothing
        self.idempotency = Idempotency(store, settings.idempotency_ttl_hours)
        store.set_prune(self.idempotency.expired)
        self.zones = Zones()
        store.on_apply(self.zones.on_apply, {"zones"})
        self.positions = Positions()
        store.on_apply(self.positions.on_apply, {"positions", "tracks"})
        self.map = map_domain.MapIndex(self)
        store.on_apply(self.map.on_apply, map_domain.POINT_COLLS, loading=False)  # it builds lazily
        self.media = MediaStore(settings.media_path)  # shared by every worker on PostgreSQL
        self.photo_workers = PhotoWorkers()  # processes start with the first photo
        self.media_downloads = InFlight(settings.media_connections_per_address)  # photo downloads per address
        self.matcher = Matcher(settings.match_threshold or DEFAULT_THRESHOLD)
        self.feed_cache = FeedCache()
        try:
            # The deployment's (one bucket in PostgreSQL for every worker), as the failed-token limit below.
            self.report_limiter = DeploymentLimiter(store, "report:", settings.report_rate_per_minute / 60.0,
                                                    settings.report_burst)
            # An IPv6 /48 as a whole (a site: 65,536 /64s) may send WIDE_REPORTS times what one /64 may.
            self.report_wide_limiter = TokenBucketLimiter(
                WIDE_REPORTS * settings.report_rate_per_minute / 60.0, WIDE_REPORTS * settings.report_burst)
        except ValueError as exc:
            raise ValueError(f"report_rate_per_minute and report_burst must be positive: {exc}") from None
        self.report_backlog = ReportBacklog(store)  # unreviewed reports per event, capped
        # The public's updates per event and kind: public reads walk only those (issue 15 item 7).
        self.public_updates = PublicUpdates(store)
        self.public_rumours = PublicRumours(store)  # and the rumours on its public board
        self.auth_limiter = AuthFailureLimiter(store, settings.auth_failures_per_minute, settings.trusted_proxies)
        self.broker = Broker(self)
        # Alerts that stay live on their area, escalation of unacknowledged ones, and Web Push to handsets.
        self.alert_book = AlertBook(store)
        self.subscriptions = Subscriptions(store)
        self.push = PushService(settings, store, self.subscriptions)  # its thread starts with start()
        self.escalation = Escalation(self)
        # The outbox of answers mailed to reporters; it learns of pending messages as the store loads.
        self.mail = Outbox(settings, store)
        # Run after an update is retracted: a rumour answered by it loses that answer.
        self.after_retract: list[RetractHook] = [
            lambda update, by: rumours_domain.unlink_retracted(self, update, by)]
        self._fill: asyncio.Task[None] | None = None
        self._backfill: asyncio.Task[int] | None = None
        # Evidence: the access log's index (GET /audit across events), the originals of uploaded photos (a
        # directory no public route reads), the deployment's signing key (made at first start, once the data
        # directory is locked), and the retention worker (the daily purge, the command line's inbox).
        self.audit = AuditIndex()
        store.on_apply(self.audit.on_apply, {AUDIT})
        self.originals = Originals(settings.data_path / "originals")
        self.signing_key: SigningKey | None = None
        self.retention = RetentionWorker(self)

    # ---- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store (loading fills the indexes), then start what follows it."""
        await self.store.open()
        self.signing_key = await asyncio.to_thread(SigningKey.load_or_create, self.settings.data_path)
        self.fingerprints.warm()
        raise_open_files_limit()
        self.broker.start()
        await self.push.start()  # after the store: its key lives in the (now locked) data directory
        self.escalation.start()  # after the broker: overdue reports made at once on a restart reach the stream
        self.retention.start()
        await self.mail.start()
        # The map's indexes fill in the background once the store is open (a million points take seconds).
        self._fill = asyncio.get_running_loop().create_task(self.map.fill())
        # Photos stored without a fingerprint get one, in the photo workers, in the background.
        self._backfill = asyncio.get_running_loop().create_task(similar_domain.backfill(self), name="fp-backfill")

    async def shutdown(self) -> None:
        """The server is stopping: end every stream now, so that it stops at once."""
        await self.broker.shutdown()

    async def stop(self) -> None:
        await self.escalation.stop()
        await self.push.stop()
        await self.retention.stop()
        await self.mail.stop()
        await self.broker.stop()
        if self._fill is not None:
            self._fill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fill
        if self._backfill is not None:
            self._backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._backfill
        await asyncio.to_thread(self.photo_workers.close)
        await self.store.close()

    async def take_report_token(self, client: str) -> float:
        """The public-report limit, for the whole deployment (shared in PostgreSQL by every worker)."""
        return await self.report_limiter.take(client)

    # ---- derived indexes ----------------------------------------------------------------------------------

    def zones_for(self, event: str, lat: float, lon: float) -> list[dict[str, object]]:
        return self.zones.zones_for(event, lat, lon)

    def _index_photos(self, coll: str, old: Item | None, new: Item) -> None:
        old_photos = () if old is None else old.get("photos") or ()
        new_photos = new.get("photos") or ()
        if not old_photos and not new_photos:  # most updates: loading a million of them costs nothing here
            return
        index = self._photo_updates if coll == "updates" else self._photo_reports
        for photo in old_photos:
            index[photo["id"]].discard(new["id"])
        for photo in new_photos:
            index[photo["id"]].add(new["id"])

    def photo_reports(self, photo_id: str) -> Iterable[Item]:
        """The reports from the public that carry this photo."""
        for report_id in self._photo_reports.get(photo_id, ()):
            doc = self.store.get("reports", report_id)
            if doc is not None:
                yield doc

    # Resolver
    def get(self, coll: str, item_id: str) -> Item | None:
        return self.store.get(coll, item_id)

    def photo_updates(self, photo_id: str) -> Iterable[Item]:
        for update_id in self._photo_updates.get(photo_id, ()):
            doc = self.store.get("updates", update_id)
            if doc is not None:
                yield doc

    def view(self, coll: str, item: Item | None, viewer: Viewer | None) -> Item | None:
        return view(coll, item, viewer, self)

    def visible(self, coll: str, item_id: str, viewer: Viewer | None) -> Item | None:
        return view(coll, self.store.get(coll, item_id), viewer, self)


def build_services(settings: Settings) -> Services:
    """The deployment the settings describe: PostgreSQL when `database_url` is set, else the embedded store
    under `data_dir`."""
    return Services(settings, make_store(settings))
