"""A local stand-in for MAST that speaks MAST's real HTTP protocol.

It answers the requests astroquery's own ``Observations`` code makes (so the
proxy's astroquery calls run unchanged against it) and the ones the proxy makes
directly:

* ``POST /portal/Mashup/Mashup.asmx/columnsconfig`` (form ``colConfigId``),
* ``POST /api/v0/invoke`` (form ``request`` = URL-encoded Mashup JSON) for the
  services ``Mast.Caom.Filtered``, ``Mast.Caom.Filtered.Position`` (a true cone)
  and ``Mast.Caom.Products``, with MAST's paging,
* ``HEAD``/``GET /api/v0.1/Download/file?uri=...`` with ``Range``,
* ``GET /api/v0.1/path_lookup/?uri=...``,
* Sesame: ``GET /cgi-bin/nph-sesame/<db>?<name>``.

Faults for tests are set with ``POST /__control`` (JSON): ``drop_after`` (bytes
a download sends before the connection is cut), ``fail_next`` (number of
requests answered 500), ``invoke_delay`` and ``chunk_delay`` (seconds),
``chunk_size`` (bytes a download sends between delays), ``hold_invoke`` (while
true, every MAST query waits) and ``hold_downloads`` (while true, every download
stops after its first chunk). The holds let a test keep a job in a state for as
long as it needs, whatever the machine's speed.

Run: ``python -m tests.support.mast_standin --port P --files DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MJD_UNIX_EPOCH = 40587.0
NAMES = {
    "NGC 3132": (151.75708, -40.43717),
    "SOUTHERN RING NEBULA": (151.75708, -40.43717),
    "CARINA NEBULA": (161.26500, -59.68444),
    "M16": (274.70000, -13.80700),
}
OBS_FIELDS = [
    ("intentType", "string"),
    ("obs_collection", "string"),
    ("provenance_name", "string"),
    ("instrument_name", "string"),
    ("project", "string"),
    ("filters", "string"),
    ("wavelength_region", "string"),
    ("target_name", "string"),
    ("target_classification", "string"),
    ("obs_id", "string"),
    ("s_ra", "float"),
    ("s_dec", "float"),
    ("dataproduct_type", "string"),
    ("proposal_pi", "string"),
    ("calib_level", "int"),
    ("t_min", "float"),
    ("t_max", "float"),
    ("t_exptime", "float"),
    ("em_min", "float"),
    ("em_max", "float"),
    ("obs_title", "string"),
    ("t_obs_release", "float"),
    ("proposal_id", "string"),
    ("proposal_type", "string"),
    ("sequence_number", "int"),
    ("s_region", "string"),
    ("jpegURL", "string"),
    ("dataURL", "string"),
    ("dataRights", "string"),
    ("mtFlag", "boolean"),
    ("srcDen", "float"),
    ("obsid", "string"),
    ("objID", "string"),
]
PRODUCT_FIELDS = [
    ("obsID", "string"),
    ("obs_collection", "string"),
    ("dataproduct_type", "string"),
    ("obs_id", "string"),
    ("description", "string"),
    ("type", "string"),
    ("dataURI", "string"),
    ("productType", "string"),
    ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"),
    ("productDocumentationURL", "string"),
    ("project", "string"),
    ("prvversion", "string"),
    ("proposal_id", "string"),
    ("productFilename", "string"),
    ("size", "int"),
    ("parent_obsid", "string"),
    ("dataRights", "string"),
    ("calib_level", "int"),
]
# Column types as MAST's columns config reports them (what build_filter_set reads).
COLUMN_CONFIG = {
    name: {
        "vot.datatype": {"float": "double", "int": "int", "string": "char", "boolean": "boolean"}[
            kind
        ]
    }
    for name, kind in OBS_FIELDS
}


def today_mjd() -> float:
    return time.time() / 86400.0 + MJD_UNIX_EPOCH


def _observation(
    obsid,
    obs_id,
    instrument,
    filters,
    calib,
    ra,
    dec,
    release,
    program,
    target="NGC 3132",
    dataproduct_type="image",
    exptime=1288.5,
):
    return {
        "intentType": "science",
        "obs_collection": "JWST",
        "provenance_name": "CALJWST",
        "instrument_name": instrument,
        "project": "JWST",
        "filters": filters,
        "wavelength_region": "INFRARED",
        "target_name": target,
        "target_classification": "Planetary nebula",
        "obs_id": obs_id,
        "s_ra": ra,
        "s_dec": dec,
        "dataproduct_type": dataproduct_type,
        "proposal_pi": "Pontoppidan, Klaus",
        "calib_level": calib,
        "t_min": 59769.1,
        "t_max": 59769.5,
        "t_exptime": exptime,
        "em_min": 795.0,
        "em_max": 1005.0,
        "obs_title": "Early Release Observations",
        "t_obs_release": release,
        "proposal_id": program,
        "proposal_type": "ERO",
        "sequence_number": None,
        "s_region": f"CIRCLE ICRS {ra} {dec} 0.02",
        "jpegURL": f"mast:JWST/product/{obs_id}_i2d.jpg",
        "dataURL": f"mast:JWST/product/{obs_id}_i2d.fits",
        "dataRights": "PUBLIC" if release < today_mjd() else "EXCLUSIVE_ACCESS",
        "mtFlag": False,
        "srcDen": math.nan,
        "obsid": obsid,
        "objID": str(int(obsid) + 1000),
    }


def build_catalogue() -> tuple[list[dict], dict[str, list[dict]]]:
    """Observations and their products (product file names, without bytes)."""
    now = today_mjd()
    obs = [
        _observation(
            "87600001",
            "jw02733-o001_t001_nircam_clear-f090w",
            "NIRCAM/IMAGE",
            "F090W",
            3,
            151.7567,
            -40.4372,
            59772.0,
            "2733",
        ),
        _observation(
            "87600002",
            "jw02733-o001_t001_nircam_clear-f187n",
            "NIRCAM/IMAGE",
            "F187N",
            3,
            151.7580,
            -40.4365,
            59772.0,
            "2733",
        ),
        _observation(
            "87600003",
            "jw02733-o002_t001_miri_f1130w",
            "MIRI/IMAGE",
            "F1130W",
            3,
            151.7590,
            -40.4380,
            59772.0,
            "2733",
        ),
        _observation(
            "87600004",
            "jw02733001001_02101_00001_nrca1",
            "NIRCAM/IMAGE",
            "F090W",
            2,
            151.7560,
            -40.4375,
            59772.0,
            "2733",
        ),
        _observation(
            "87600005",
            "jw01234-o005_t002_nircam_clear-f444w",
            "NIRCAM/IMAGE",
            "F444W",
            3,
            151.7570,
            -40.4370,
            now + 200,
            "1234",
        ),
        _observation(
            "87600006",
            "jw05555-o001_t001_miri_f560w",
            "MIRI/IMAGE",
            "F560W",
            3,
            161.2650,
            -59.6844,
            now - 3,
            "5555",
            target="CARINA",
            exptime=math.nan,
        ),
        _observation(
            "87600007",
            "jw02731-o001_t017_nircam_clear-f444w",
            "NIRCAM/IMAGE",
            "F444W",
            3,
            161.2700,
            -59.6900,
            now - 10,
            "2731",
            target="CARINA",
        ),
        # Far from NGC 3132 but inside a 0.2 deg RA/Dec *box* (not a cone) around it.
        _observation(
            "87600008",
            "jw02733-o009_t001_nircam_clear-f200w",
            "NIRCAM/IMAGE",
            "F200W",
            3,
            151.7567 + 0.19 / math.cos(math.radians(40.4372)),
            -40.4372 + 0.19,
            59772.0,
            "2733",
        ),
    ]
    products: dict[str, list[dict]] = {}
    product = make_product

    for o in obs:
        oid = o["obs_id"]
        if oid.startswith("jw05555"):
            products[o["obsid"]] = []
            continue
        if o["calib_level"] == 3:
            base = oid
            items = [
                product(o, f"{base}_i2d.fits"),
                product(o, f"{base}_segm.fits", sub="SEGM"),
                product(o, f"{base}_cat.ecsv", ptype="SCIENCE", sub="CAT"),
                product(o, f"{base}_i2d.jpg", ptype="PREVIEW", sub="JPG"),
                product(o, f"{base}_x1d.fits", sub="X1D"),
                product(
                    o, f"{oid.split('-')[0]}001001_02101_00001_nrca1_cal.fits", sub="CAL", calib=2
                ),
            ]
        else:
            items = [
                product(o, f"{oid}_cal.fits", sub="CAL", calib=2),
                product(o, f"{oid}_rate.fits", sub="RATE", calib=2),
                product(o, f"{oid}_uncal.fits", sub="UNCAL", calib=1),
            ]
        if oid == "jw02733-o001_t001_nircam_clear-f090w":  # a product still embargoed
            items.append(
                dict(product(o, f"{oid}_embargoed_i2d.fits"), dataRights="EXCLUSIVE_ACCESS")
            )
        products[o["obsid"]] = items
    return obs, products


def make_product(
    o: dict, filename: str, ptype: str = "SCIENCE", sub: str = "I2D", calib: int = 3, size: int = 0
) -> dict:
    """A MAST product row of observation ``o``."""
    return {
        "obsID": o["obsid"],
        "obs_collection": "JWST",
        "dataproduct_type": "image",
        "obs_id": filename.rsplit("_", 1)[0],
        "description": "exposure/target (L3) : " + sub.lower(),
        "type": "S",
        "dataURI": f"mast:JWST/product/{filename}",
        "productType": ptype,
        "productGroupDescription": "Minimum Recommended Products",
        "productSubGroupDescription": sub,
        "productDocumentationURL": "",
        "project": "CALJWST",
        "prvversion": "1.11.4",
        "proposal_id": o["proposal_id"],
        "productFilename": filename,
        "size": size,
        "parent_obsid": o["obsid"],
        "dataRights": "PUBLIC",
        "calib_level": calib,
    }


class StandIn:
    """The state of a running stand-in: catalogue, product bytes, faults."""

    def __init__(self, files_dir: Path):
        self.files_dir = Path(files_dir)
        self.observations, self.products = build_catalogue()
        self.faults = {
            "drop_after": None,
            "fail_next": 0,
            "invoke_delay": 0.0,
            "chunk_delay": 0.0,
            "chunk_size": 1 << 20,
            "hold_invoke": False,
            "hold_downloads": False,
        }
        self.requests: list[str] = []
        self.extra_files: dict[str, Path] = {}
        self._materialise()

    def _materialise(self) -> None:
        """Write a small real FITS file (or bytes) for every product."""
        from tests.support.synthetic import make_jwst_image

        self.files_dir.mkdir(parents=True, exist_ok=True)
        for seed, items in enumerate(self.products.values()):
            for item in items:
                path = self.files_dir / item["productFilename"]
                if not path.exists():
                    if path.suffix == ".fits":
                        make_jwst_image(
                            path, shape=(96, 128), seed=seed + 1, n_stars=10, n_galaxies=1
                        )
                    else:
                        path.write_bytes(os.urandom(5000))
                item["size"] = path.stat().st_size

    def add_large_product(self, obsid: str, filename: str, path: Path) -> None:
        o = next(x for x in self.observations if x["obsid"] == obsid)
        self.products.setdefault(obsid, []).append(
            make_product(o, filename, size=path.stat().st_size)
        )
        self.extra_files[filename] = path

    def file_for(self, uri: str) -> Path | None:
        if not uri.startswith("mast:JWST/product/"):
            return None
        name = uri.rsplit("/", 1)[-1]
        if name in self.extra_files:
            return self.extra_files[name]
        path = self.files_dir / name
        return path if path.exists() else None


# ------------------------------------------------------------------------------------------
# Mashup query evaluation
# ------------------------------------------------------------------------------------------


def _matches(row: dict, flt: dict) -> bool:
    name = flt["paramName"]
    value = row.get(name)
    values = flt.get("values", [])
    free = flt.get("freeText")
    if values and isinstance(values[0], dict):  # continuous
        lo, hi = values[0]["min"], values[0]["max"]
        return (
            value is not None
            and not (isinstance(value, float) and math.isnan(value))
            and lo <= value <= hi
        )
    ok = False
    if values:
        ok = str(value) in [str(v) for v in values]
    if free:
        pattern = "^" + re.escape(free).replace("%", ".*") + "$"
        ok = ok or re.match(pattern, str(value), re.IGNORECASE) is not None
    return ok


def _angular_distance(ra1, dec1, ra2, dec2) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _json_safe(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _paged(rows: list[dict], fields, pagesize: int, page: int) -> dict:
    pagesize = max(1, int(pagesize or 50000))
    pages = max(1, math.ceil(len(rows) / pagesize))
    chunk = rows[(page - 1) * pagesize : page * pagesize]
    return {
        "status": "COMPLETE",
        "msg": "",
        "paging": {
            "page": page,
            "pageSize": pagesize,
            "pagesFiltered": pages,
            "rows": len(chunk),
            "rowsFiltered": len(rows),
            "rowsTotal": len(rows),
        },
        "fields": [{"name": n, "type": t} for n, t in fields],
        "data": [_json_safe(r) for r in chunk],
    }


async def _form(request: Request) -> dict[str, str]:
    """A URL-encoded form body as a dict (first value of each field)."""
    body = (await request.body()).decode("utf-8")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def create_app(state: StandIn) -> Starlette:
    async def maybe_fail(request: Request):
        state.requests.append(f"{request.method} {request.url.path}")
        if state.faults["fail_next"] > 0:
            state.faults["fail_next"] -= 1
            return PlainTextResponse("Internal Server Error", status_code=500)
        return None

    async def columnsconfig(request: Request):
        failed = await maybe_fail(request)
        if failed:
            return failed
        form = await _form(request)
        if not str(form.get("colConfigId", "")).startswith("Mast.Caom"):
            return JSONResponse({})
        return JSONResponse(COLUMN_CONFIG)

    async def invoke(request: Request):
        failed = await maybe_fail(request)
        if failed:
            return failed
        if state.faults["invoke_delay"]:
            await asyncio.sleep(state.faults["invoke_delay"])
        while state.faults["hold_invoke"]:
            await asyncio.sleep(0.02)
        form = await _form(request)
        req = json.loads(form["request"])
        service = req.get("service")
        params = req.get("params", {})
        page, pagesize = int(req.get("page", 1)), int(req.get("pagesize", 50000))
        if service in ("Mast.Caom.Filtered", "Mast.Caom.Filtered.Position"):
            rows = [
                o
                for o in state.observations
                if all(_matches(o, f) for f in params.get("filters", []))
            ]
            if service == "Mast.Caom.Filtered.Position":
                ra, dec, radius = (float(x) for x in str(params["position"]).split(","))
                rows = [
                    o for o in rows if _angular_distance(ra, dec, o["s_ra"], o["s_dec"]) <= radius
                ]
            return JSONResponse(_paged(rows, OBS_FIELDS, pagesize, page))
        if service == "Mast.Caom.Products":
            ids = str(params.get("obsid", "")).split(",")
            rows = [p for i in ids for p in state.products.get(i, [])]
            return JSONResponse(_paged(rows, PRODUCT_FIELDS, pagesize, page))
        return JSONResponse(
            {"status": "ERROR", "msg": f"Unknown service {service}", "data": [], "fields": []}
        )

    async def download(request: Request):
        failed = await maybe_fail(request)
        if failed:
            return failed
        uri = request.query_params.get("uri", "")
        path = state.file_for(uri)
        if path is None:
            return PlainTextResponse("Not Found", status_code=404)
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        rng = request.headers.get("range")
        if rng:
            m = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
            if not m:
                return PlainTextResponse("Bad range", status_code=416)
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
            if start >= size:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            end = min(end, size - 1)
            status = 206
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Length": str(end - start + 1),
            "Content-Disposition": f"attachment; filename={path.name}",
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if request.method == "HEAD":
            return Response(
                status_code=status, headers=headers, media_type="application/octet-stream"
            )
        drop_after = state.faults["drop_after"]
        chunk_delay = state.faults["chunk_delay"]
        chunk_size = int(state.faults["chunk_size"])
        if drop_after is not None:
            state.faults["drop_after"] = None  # one dropped connection per setting

        async def body():
            sent = 0
            with open(path, "rb") as handle:
                handle.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    block = handle.read(min(chunk_size, remaining))
                    if not block:
                        break
                    if drop_after is not None and sent + len(block) > drop_after:
                        yield block[: max(0, drop_after - sent)]
                        raise ConnectionResetError("stand-in dropped the connection")
                    remaining -= len(block)
                    sent += len(block)
                    yield block
                    if chunk_delay:
                        await asyncio.sleep(chunk_delay)
                    while state.faults["hold_downloads"]:
                        await asyncio.sleep(0.02)

        return StreamingResponse(
            body(), status_code=status, headers=headers, media_type="application/octet-stream"
        )

    async def path_lookup(request: Request):
        failed = await maybe_fail(request)
        if failed:
            return failed
        out = {}
        for uri in request.query_params.getlist("uri"):
            name = uri.rsplit("/", 1)[-1]
            obs_id = name.rsplit("_", 1)[0]
            program = name[2:7] if name.startswith("jw") else "00000"
            out[uri] = {
                "path": f"/jwst/public/jw{program}/{obs_id}/{name}" if state.file_for(uri) else None
            }
        return JSONResponse(out)

    async def sesame(request: Request):
        failed = await maybe_fail(request)
        if failed:
            return failed
        name = unquote_plus(request.url.query).strip()
        coords = NAMES.get(re.sub(r"\s+", " ", name).upper())
        if coords is None:
            return PlainTextResponse(f"# {name}\n#! *** Nothing found *** \n")
        return PlainTextResponse(f"# {name}\n#=S=Simbad: 1\n%J {coords[0]} {coords[1]} = x\n")

    async def control(request: Request):
        if request.method == "POST":
            state.faults.update(await request.json())
        return JSONResponse({"faults": state.faults, "requests": len(state.requests)})

    routes = [
        Route("/portal/Mashup/Mashup.asmx/columnsconfig", columnsconfig, methods=["POST"]),
        Route("/api/v0/invoke", invoke, methods=["POST"]),
        Route("/api/v0.1/Download/file", download, methods=["GET", "HEAD"]),
        Route("/api/v0.1/path_lookup/", path_lookup, methods=["GET"]),
        Route("/cgi-bin/nph-sesame/{db}", sesame, methods=["GET"]),
        Route("/__control", control, methods=["GET", "POST"]),
        Route("/health", lambda r: JSONResponse({"ok": True}), methods=["GET"]),
    ]
    return Starlette(routes=routes)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--files", required=True)
    parser.add_argument(
        "--large",
        nargs="*",
        default=[],
        help="obsid=filename=path entries served as extra products",
    )
    args = parser.parse_args()
    state = StandIn(Path(args.files))
    for entry in args.large:
        obsid, filename, path = entry.split("=", 2)
        state.add_large_product(obsid, filename, Path(path))
    uvicorn.run(create_app(state), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
