"""Talking to MAST: searches, product lists, download URLs and archive paths.

astroquery's own ``Observations`` code does the portal protocol; every URL it
uses is pointed at ``MAST_BASE_URL``. Target names are resolved by Sesame at
``NAME_RESOLVER_URL`` (astropy's ``SkyCoord.from_name``), trying the spelling
variants of CONTRACT.md §2.1. Position searches are a true cone (MAST's
``Mast.Caom.Filtered.Position`` service). Only public JWST data is returned:
searches and product lists are limited to the JWST collection with a release
date in the past, and products to ``dataRights`` PUBLIC.

Every search asks MAST for one page (:data:`SEARCH_PAGE_SIZE` rows), never for
"all pages", and astroquery's own time limit is the service's, so a search that
the route gave up on (504) ends its work within that limit too. These functions
block; the routes run them in :attr:`MastService.executor` (its own threads, not
the ones the download job store uses) under ``MAST_SEARCH_TIMEOUT``.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

import numpy as np
from cachetools import TTLCache
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from app.errors import BadRequest, NotFound, UpstreamError

if TYPE_CHECKING:
    from astropy.table import Table

logger = logging.getLogger(__name__)

Row = dict[str, Any]  # one MAST table row, JSON-safe

MJD_UNIX_EPOCH = 40587.0
SPECTRAL_SUFFIXES = ("_x1d.fits", "_x1dints.fits", "_c1d.fits")
PRODUCT_CACHE_SECONDS = 60.0
SEARCH_PAGE_SIZE = 500
RECENT_PAGE_SIZE = 2000
SEARCH_THREADS = 8
# A search's own requests give up this long after the route has answered 504.
SEARCH_GRACE_SECONDS = 5.0
_URI_RE = re.compile(r"^mast:[A-Za-z0-9_./+-]+$")


def now_mjd() -> float:
    return time.time() / 86400.0 + MJD_UNIX_EPOCH


def name_variants(name: str) -> list[str]:
    """Spellings tried in turn when resolving a target name (CONTRACT.md §2.1)."""
    base = re.sub(r"\s+", " ", name).strip()
    variants = [
        base,
        re.sub(r"[-_]", " ", base),
        re.sub(r"[\s_]+", "-", base),
        re.sub(r"(?<=[A-Za-z])\s+(?=\d)|(?<=\d)\s+(?=[A-Za-z])", "", re.sub(r"[-_]", " ", base)),
        re.sub(r"[\s_-]+", "", base),
    ]
    out: list[str] = []
    for v in variants:
        v = re.sub(r"\s+", " ", v).strip()
        if v and v not in out:
            out.append(v)
    return out


def _plain(value: object) -> Any:
    """A JSON-safe Python value for one table cell (masked/NaN/Inf -> None)."""
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, np.ma.core.MaskedConstant):
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.str_):
        return str(value)
    return value


def table_rows(table: Table | None) -> list[Row]:
    """An astropy Table as a list of JSON-safe dicts."""
    if table is None or len(table) == 0:
        return []
    names = table.colnames
    rows: list[Row] = []
    for row in table:
        rows.append({name: _plain(row[name]) for name in names})
    return rows


class _TimeoutAdapter(HTTPAdapter):
    """requests' transport with a default (connect, read) timeout for every request."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.default_timeout = timeout

    def send(  # type: ignore[override]
        self, request: PreparedRequest, timeout: object = None, **kwargs: Any
    ) -> Response:
        return super().send(request, timeout=timeout or self.default_timeout, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ProductFile:
    """One file to download: its name, MAST URI, size (may be 0 if unknown)."""

    filename: str
    uri: str
    size: int
    calib_level: int | None = None


class MastService:
    """All calls to MAST, bound to one base URL."""

    def __init__(
        self, base_url: str, name_resolver_url: str | None = None, timeout: float = 120.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = urlparse(self.base_url).netloc
        self.name_resolver_url = name_resolver_url
        self.timeout = timeout
        self._local = threading.local()
        # Product lists of recently seen observations: listing products and then
        # downloading them (the usual sequence) asks MAST once.
        self._products: TTLCache[tuple[str, str], list[Row]] = TTLCache(
            maxsize=256, ttl=PRODUCT_CACHE_SECONDS
        )
        self._products_lock = threading.Lock()
        # Searches wait on MAST for long: their own threads, bounded, so that slow or
        # abandoned searches never hold up the job store's heartbeat and reads.
        self.executor = ThreadPoolExecutor(
            max_workers=SEARCH_THREADS, thread_name_prefix="mast-search"
        )

    def close(self) -> None:
        """Stop the search threads (waiting searches are dropped)."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- astroquery -------------------------------------------------------------------
    def observations(self) -> Any:
        """A per-thread astroquery ObservationsClass pointed at MAST_BASE_URL."""
        obs = getattr(self._local, "obs", None)
        if obs is None:
            from astroquery.mast.observations import ObservationsClass

            obs = ObservationsClass()
            portal = obs._portal_api_connection
            portal.MAST_REQUEST_URL = self.base_url + "/api/v0/invoke"
            portal.COLUMNS_CONFIG_URL = self.base_url + "/portal/Mashup/Mashup.asmx/columnsconfig"
            portal.MAST_DOWNLOAD_URL = self.base_url + "/api/v0.1/Download/file"
            portal.MAST_BUNDLE_URL = self.base_url + "/api/v0.1/Download/bundle"
            portal.TIMEOUT = self.timeout
            # astroquery sends its requests without a socket timeout, so a silent MAST
            # would hold the thread for ever: every request of its session gets one, a
            # little longer than the route waits (its 504 always comes first).
            adapter = _TimeoutAdapter(
                (min(30.0, self.timeout), self.timeout + SEARCH_GRACE_SECONDS)
            )
            obs._session.mount("http://", adapter)
            obs._session.mount("https://", adapter)
            self._local.obs = obs
        return obs

    def _query(self, pagesize: int | None = None, **criteria: Any) -> list[Row]:
        import warnings

        from astroquery.exceptions import RemoteServiceError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # page=1: one request for one page (astroquery fetches every page
                # when no page is given).
                table = self.observations().query_criteria(
                    pagesize=pagesize or SEARCH_PAGE_SIZE, page=1, **criteria
                )
        except RemoteServiceError as exc:
            raise UpstreamError(f"MAST reported an error: {exc}") from None
        except Exception as exc:  # requests/connection errors and astroquery's own
            raise UpstreamError(f"MAST request failed: {_describe(exc)}") from None
        return table_rows(table)

    def _public(self, **criteria: Any) -> dict[str, Any]:
        criteria.setdefault("obs_collection", "JWST")
        criteria["t_obs_release"] = [0, now_mjd()]
        return criteria

    @staticmethod
    def _levels(calib_level: list[int] | None) -> dict[str, Any]:
        return {"calib_level": list(calib_level)} if calib_level else {}

    # -- searches -----------------------------------------------------------------------
    def resolve_target(self, name: str) -> tuple[float, float]:
        """(ra, dec) in degrees via Sesame; 404 when no variant resolves, 502 when down."""
        from astropy.coordinates import SkyCoord, name_resolve

        variants = name_variants(name)
        failures = []
        urls = [self.name_resolver_url] if self.name_resolver_url else None
        for variant in variants:
            try:
                if urls:
                    with name_resolve.sesame_url.set(urls):
                        coord = SkyCoord.from_name(variant)
                else:
                    coord = SkyCoord.from_name(variant)
                return float(coord.ra.deg), float(coord.dec.deg)
            except name_resolve.NameResolveError as exc:
                text = str(exc)
                if "All Sesame queries failed" in text:
                    raise UpstreamError("The name resolver (Sesame) could not be reached") from None
                failures.append(variant)
        raise NotFound(f"Could not resolve target name '{name}' using variants: {variants}")

    def search_position(
        self, ra: float, dec: float, radius: float, calib_level: list[int] | None
    ) -> list[Row]:
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        coord = SkyCoord(ra % 360.0, dec, unit="deg")
        return self.rewrite_urls(
            self._query(
                coordinates=coord,
                radius=radius * u.deg,
                **self._public(**self._levels(calib_level)),
            )
        )

    def search_target(self, name: str, radius: float, calib_level: list[int] | None) -> list[Row]:
        ra, dec = self.resolve_target(name)
        return self.search_position(ra, dec, radius, calib_level)

    def search_observation(self, obs_id: str, calib_level: list[int] | None) -> list[Row]:
        return self.rewrite_urls(
            self._query(obs_id=obs_id, **self._public(**self._levels(calib_level)))
        )

    def search_program(self, program_id: str, calib_level: list[int] | None) -> list[Row]:
        return self.rewrite_urls(
            self._query(proposal_id=program_id, **self._public(**self._levels(calib_level)))
        )

    def search_recent(
        self, days_back: int, instrument: str | None, limit: int, offset: int
    ) -> list[Row]:
        today = now_mjd()
        criteria = {"obs_collection": "JWST", "t_obs_release": [today - days_back, today]}
        if instrument:
            # MAST's instrument_name is e.g. "NIRCAM/IMAGE": match the instrument prefix.
            criteria["instrument_name"] = instrument.strip().upper() + "*"
        rows = self._query(pagesize=RECENT_PAGE_SIZE, **criteria)
        rows.sort(key=lambda r: r.get("t_obs_release") or 0.0, reverse=True)
        return self.rewrite_urls(rows[offset : offset + limit])

    # -- products -------------------------------------------------------------------------
    def product_rows(self, obs_id: str, product_type: str = "SCIENCE") -> list[Row]:
        """Public FITS products of a public JWST observation (empty when there is none)."""
        key = (obs_id, product_type)
        with self._products_lock:
            rows = self._products.get(key)
        if rows is None:
            rows = self._fetch_product_rows(obs_id, product_type)
            with self._products_lock:
                self._products[key] = rows
        return [dict(row) for row in rows]

    def _fetch_product_rows(self, obs_id: str, product_type: str) -> list[Row]:
        import warnings

        obs = self.observations()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = obs.query_criteria(
                    pagesize=SEARCH_PAGE_SIZE, page=1, **self._public(obs_id=obs_id)
                )
                if table is None or len(table) == 0:
                    return []
                products = obs.get_product_list(table)
                if products is None or len(products) == 0:
                    return []
                products = obs.filter_products(
                    products, productType=[product_type], extension="fits"
                )
        except Exception as exc:
            raise UpstreamError(f"MAST request failed: {_describe(exc)}") from None
        return [
            row
            for row in table_rows(products)
            if str(row.get("dataRights") or "PUBLIC").upper() == "PUBLIC"
        ]

    def download_url(self, uri: str) -> str:
        if not _URI_RE.match(uri):
            raise BadRequest(f"Not a MAST data URI: {uri!r}")
        return f"{self.base_url}/api/v0.1/Download/file?uri={quote(uri, safe=':/')}"

    def rewrite_urls(self, rows: list[Row]) -> list[Row]:
        for row in rows:
            for key in ("jpegURL", "dataURL"):
                value = row.get(key)
                if isinstance(value, str) and value.startswith("mast:"):
                    row[key] = f"{self.base_url}/api/v0.1/Download/file?uri={quote(value, safe='')}"
        return rows

    def files_to_download(
        self,
        obs_id: str,
        product_type: str = "SCIENCE",
        calib_level: list[int] | None = None,
        drop_spectra: bool = True,
        name_contains: str | None = None,
    ) -> list[ProductFile]:
        """The product files of an observation after the contract's filters."""
        from app.storage.helpers import sanitize_filename

        seen: set[str] = set()
        out: list[ProductFile] = []
        for row in self.product_rows(obs_id, product_type):
            uri = row.get("dataURI") or ""
            name = row.get("productFilename") or ""
            if not _URI_RE.match(uri) or not name:
                continue
            level = row.get("calib_level")
            if calib_level and level is not None and int(level) not in calib_level:
                continue
            if drop_spectra and name.endswith(SPECTRAL_SUFFIXES):
                continue
            if name_contains and name_contains not in name:
                continue
            filename = sanitize_filename(name)
            if filename in seen:
                continue
            seen.add(filename)
            out.append(
                ProductFile(
                    filename=filename,
                    uri=uri,
                    size=int(row.get("size") or 0),
                    calib_level=None if level is None else int(level),
                )
            )
        return out

    def archive_keys(self, files: list[ProductFile], obs_id: str) -> dict[str, str]:
        """Object keys in the public bucket, from MAST's path lookup (50 URIs a call),
        falling back to the bucket's ``jwst/public/<program>/<obs_id>/<file>`` layout."""
        import requests

        keys: dict[str, str] = {}
        url = self.base_url + "/api/v0.1/path_lookup/"
        for start in range(0, len(files), 50):
            chunk = files[start : start + 50]
            try:
                response = requests.get(
                    url, params={"uri": [f.uri for f in chunk]}, timeout=self.timeout
                )
                response.raise_for_status()
                found = response.json()
            except Exception as exc:
                logger.warning(
                    "MAST path lookup failed (%s); using the default layout", _describe(exc)
                )
                found = {}
            for f in chunk:
                path = (found.get(f.uri) or {}).get("path")
                keys[f.filename] = (
                    path.lstrip("/") if path else default_archive_key(obs_id, f.filename)
                )
        return keys


def default_archive_key(obs_id: str, filename: str) -> str:
    """``jwst/public/jw<program>/<obs_id>/<file>``, the public bucket's JWST layout."""
    match = re.match(r"jw(\d{5})", obs_id) or re.match(r"jw(\d{5})", filename)
    program = match.group(1) if match else "00000"
    return f"jwst/public/jw{program}/{obs_id}/{filename}"


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]
