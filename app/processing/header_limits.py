"""A bound on FITS header sizes, checked before astropy parses a header.

astropy holds every card of a header as Python objects (hundreds of bytes each),
so a crafted file with a 23 MB header costs a worker half a gigabyte before any
pixel is read. :func:`check_header_cards` walks the file's headers block by block
(2880-byte blocks of 80-character cards, up to the ``END`` card), stops as soon
as one holds more than ``max_cards`` cards, and skips each HDU's data by the size
its structural keywords declare (their values read by astropy's own ``Card``).
Real JWST headers hold a few hundred cards; the default allows 10,000. In a
whole-file gzip, skipping data means decompressing it, so the walk there stops
after :data:`GZIP_WALK_BYTES` of the decompressed stream (the headers readers
reach first; astropy decompresses the rest itself when it needs it).
"""

from __future__ import annotations

import gzip
import math
import os
import warnings
from typing import BinaryIO

from astropy.io import fits

from app.errors import PayloadTooLarge

MAX_HEADER_CARDS = 10_000
MAX_HDUS = 1000
GZIP_WALK_BYTES = 64 * 1024 * 1024
BLOCK = 2880
CARD = 80
Stream = BinaryIO | gzip.GzipFile
_STRUCTURE = (b"BITPIX  ", b"NAXIS", b"PCOUNT  ", b"GCOUNT  ")


def check_header_cards(path: str | os.PathLike[str], max_cards: int = MAX_HEADER_CARDS) -> int:
    """413 when a header of the file holds more than ``max_cards`` cards; else the
    number of cards of the headers walked (what parsing them all would cost).

    Plain and gzip files are walked; other compressions are left to astropy (0). A
    file that ends early simply ends the walk (the readers report damage themselves).
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as stream:
                return _walk(stream, max_cards, GZIP_WALK_BYTES)
        elif magic == b"SI":
            return _walk(raw, max_cards, None)
    return 0


def _walk(stream: Stream, max_cards: int, budget: int | None) -> int:
    position = total = 0
    for index in range(MAX_HDUS):
        if budget is not None and position > budget:
            break
        header = _read_header(stream, max_cards, index)
        if header is None:
            break
        structure, cards = header
        total += cards
        data = math.ceil(_data_bytes(structure) / BLOCK) * BLOCK
        if data:
            stream.seek(data, os.SEEK_CUR)
        position = stream.tell()
    return total


def _read_header(stream: Stream, max_cards: int, index: int) -> tuple[dict[str, int], int] | None:
    """The structural keywords and the card count of the next header; None at the end
    of the file."""
    structure: dict[str, int] = {}
    cards = 0
    while True:
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            return None
        for start in range(0, BLOCK, CARD):
            image = block[start : start + CARD]
            if image.startswith(b"END     ") or image.rstrip() == b"END":
                return structure, cards
            cards += 1
            if image.startswith(_STRUCTURE):
                _keep(structure, image)
        if cards > max_cards:
            where = "primary header" if index == 0 else f"header of HDU {index}"
            raise PayloadTooLarge(
                f"FITS header too large: the {where} holds more than {max_cards:,} cards"
            )


def _keep(structure: dict[str, int], image: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            card = fits.Card.fromstring(image.decode("ascii", "replace"))
            value = card.value
        except (ValueError, TypeError):
            return
    if isinstance(value, int) and not isinstance(value, bool):
        structure[card.keyword] = value


def _data_bytes(structure: dict[str, int]) -> int:
    naxis = structure.get("NAXIS", 0)
    if naxis <= 0:
        return 0
    shape = [structure.get(f"NAXIS{i}", 0) for i in range(1, naxis + 1)]
    if structure.get("NAXIS1") == 0 and naxis > 1:  # random groups: NAXIS1 = 0
        shape = shape[1:]
    bits = abs(structure.get("BITPIX", 8))
    groups = structure.get("GCOUNT", 1)
    extra = structure.get("PCOUNT", 0)
    return bits * groups * (extra + math.prod(shape)) // 8
