"""Astronomy Visualization Metadata (AVM 1.2) as XMP, embedded in PNG and JPEG.

The sky position of a rendered picture is described with the AVM spatial
tags, derived from the file's astropy WCS and scaled to the picture: the
picture covers the whole image, so a pixel edge at FITS coordinate 0.5 maps to
picture edge 0.5, and the reference pixel and scale are rescaled per axis.
AVM, like FITS, counts pixels from the lower-left corner, which is how the
engine draws images (row 0 at the bottom).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import numpy as np

from app.errors import BadRequest
from app.processing.fits_io import scale_and_rotation

if TYPE_CHECKING:
    from astropy.wcs import WCS

_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_SPECTRAL_BANDS = {
    "radio",
    "millimeter",
    "infrared",
    "optical",
    "ultraviolet",
    "x-ray",
    "gamma-ray",
}


def _seq(values: Iterable[object]) -> str:
    items = "".join(f"<rdf:li>{escape(str(v))}</rdf:li>" for v in values)
    return f"<rdf:Seq>{items}</rdf:Seq>"


def _num(value: float) -> str:
    return repr(float(value))


def spatial_tags(
    wcs: WCS, image_width: int, image_height: int, data_width: int, data_height: int
) -> dict[str, str]:
    """AVM ``Spatial.*`` tags (XML fragments) for a picture of the given size.

    ``wcs`` is a 2-D celestial astropy WCS of the data, ``data_width`` x
    ``data_height`` its pixel size, ``image_width`` x ``image_height`` the size
    of the picture that shows the whole data.
    """
    sx = image_width / data_width
    sy = image_height / data_height
    crpix = wcs.wcs.crpix
    ref_pixel = ((crpix[0] - 0.5) * sx + 0.5, (crpix[1] - 0.5) * sy + 0.5)
    cd = np.array(wcs.pixel_scale_matrix, dtype=float)
    cd = cd @ np.diag([1.0 / sx, 1.0 / sy])
    cdelt1, cdelt2, rotation = scale_and_rotation(cd)
    ctype = [c.upper() for c in wcs.wcs.ctype]
    projection = ctype[0][-3:] if len(ctype[0]) >= 8 else "TAN"
    radesys = (wcs.wcs.radesys or "ICRS").upper()
    frame = radesys if radesys in ("ICRS", "FK5", "FK4") else "ICRS"
    if ctype[0].startswith("GLON"):
        frame = "GAL"
    elif ctype[0].startswith("ELON"):
        frame = "ECL"
    tags = {
        "Spatial.CoordinateFrame": escape(frame),
        "Spatial.Equinox": "J2000"
        if frame in ("ICRS", "FK5")
        else "B1950"
        if frame == "FK4"
        else "J2000",
        "Spatial.ReferenceValue": _seq([_num(v) for v in wcs.wcs.crval]),
        "Spatial.ReferenceDimension": _seq([_num(image_width), _num(image_height)]),
        "Spatial.ReferencePixel": _seq([_num(v) for v in ref_pixel]),
        "Spatial.Scale": _seq([_num(cdelt1), _num(cdelt2)]),
        "Spatial.Rotation": _num(rotation),
        "Spatial.CoordsystemProjection": escape(projection),
        "Spatial.Quality": "Full",
    }
    if np.linalg.det(cd) > 0:  # mirrored parity cannot be said with Scale+Rotation alone
        tags["Spatial.CDMatrix"] = _seq([_num(v) for v in cd.ravel()])
    return tags


def build_xmp(metadata: dict[str, str] | None = None, spatial: dict[str, str] | None = None) -> str:
    """An XMP packet with AVM tags.

    ``metadata`` keys (all optional): ``target_name``, ``instrument``, ``filter``,
    ``description``, ``facility`` (default "JWST"), ``spectral_band``, ``publisher``.
    """
    meta = {k: str(v) for k, v in (metadata or {}).items() if v is not None and str(v).strip()}
    meta.setdefault("facility", "JWST")
    parts: list[str] = []
    if "target_name" in meta:
        parts.append(
            f"<dc:subject><rdf:Bag><rdf:li>{escape(meta['target_name'])}</rdf:li>"
            "</rdf:Bag></dc:subject>"
        )
        parts.append(
            f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">'
            f"{escape(meta['target_name'])}</rdf:li></rdf:Alt></dc:title>"
        )
    if "description" in meta:
        parts.append(
            '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
            f"{escape(meta['description'])}</rdf:li></rdf:Alt></dc:description>"
        )
    parts.append(f"<avm:Facility>{_seq([meta['facility']])}</avm:Facility>")
    if "instrument" in meta:
        parts.append(f"<avm:Instrument>{_seq([meta['instrument']])}</avm:Instrument>")
    if "filter" in meta:
        parts.append(f"<avm:Spectral.Bandpass>{_seq([meta['filter']])}</avm:Spectral.Bandpass>")
    if "spectral_band" in meta:
        band = meta["spectral_band"].strip()
        band = band.capitalize() if band.lower() in _SPECTRAL_BANDS else band
        if band.lower() == "x-ray":
            band = "X-ray"
        parts.append(f"<avm:Spectral.Band>{_seq([band])}</avm:Spectral.Band>")
    if "publisher" in meta:
        parts.append(f"<avm:Publisher>{escape(meta['publisher'])}</avm:Publisher>")
    for name, value in (spatial or {}).items():
        parts.append(f"<avm:{name}>{value}</avm:{name}>")
    parts.append("<avm:MetadataVersion>1.2</avm:MetadataVersion>")
    body = "\n    ".join(parts)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:avm="http://www.communicatingastronomy.org/avm/1.0/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        f"    {body}\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )


def embed_xmp_jpeg(jpeg: bytes, xmp: str) -> bytes:
    """Insert ``xmp`` as an APP1 segment after the JPEG's SOI/APP0 markers."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream")
    payload = _XMP_JPEG_HEADER + xmp.encode("utf-8")
    if len(payload) + 2 > 0xFFFF:
        raise BadRequest(
            f"The AVM metadata ({len(payload):,} bytes) is larger than one JPEG "
            "metadata segment holds (64 KB); ask for the picture without AVM tags "
            "or as PNG"
        )
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    pos = 2
    # Keep JFIF (APP0) first, as readers expect.
    if jpeg[2:4] == b"\xff\xe0":
        (length,) = struct.unpack(">H", jpeg[4:6])
        pos = 4 + length
    return jpeg[:pos] + segment + jpeg[pos:]
