"""Cheap proofs that TensorFlow's JPEG and PNG decoders will accept a file.

Decoding a file to check it costs ten times what the scan does (Pillow
measured 190 us of CPU per 64x64 JPEG, against 20 us for the scan), and the
scan of a large folder is what a user waits for before training. TensorFlow
decodes plain JPEG and PNG files with libjpeg-turbo and libpng, and what makes
those fail is known and cheap to check without decoding pixels:

* JPEG: libjpeg-turbo fails on the marker structure (tables, frame, scan
  headers, unknown markers, data ending before the end-of-image marker), never
  on corrupt entropy-coded data, which it decodes as grey blocks with a
  warning. :func:`jpeg_problem` walks every marker of the file with
  libjpeg-turbo's checks.
* PNG: libpng fails on a broken chunk structure, a bad CRC in a critical
  chunk, a damaged or short zlib stream and an unknown row filter.
  :func:`png_problem` checks the chunks and inflates the image data (C speed,
  in bounded pieces) without unfiltering it.

Both are conservative: anything they cannot vouch for (a rarely used marker,
an ancillary chunk with a bad CRC...) is reported, and the scan then decodes
the file with Pillow and, if that works, has Pillow decode it in training. A
file they pass is one TensorFlow decodes; the fuzz test in
``tests/test_fuzz.py`` holds them to that.
"""

from __future__ import annotations

import struct
import zlib

# ------------------------------------------------------------------- JPEG
_JPEG_MAX_DIMENSION = 65500
# TensorFlow refuses JPEGs whose decoded size reaches 2**29 bytes.
_TF_JPEG_MAX_BYTES = 1 << 29
# Checked table segments and header prefixes, by their bytes: files from one
# camera or one export share them, so each is checked once. Cleared when full.
_HUFFMAN: dict[bytes, tuple] = {}
_QUANT: dict[bytes, tuple] = {}
_PREFIXES: dict[bytes, tuple] = {}
_MEMO_MAX = 4096


def _remember(memo: dict, key: bytes, value: tuple) -> tuple:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value
    return value


def _huffman_tables(body: bytes) -> tuple:
    """``(problem, DC table ids, AC table ids)`` of a DHT segment, with
    libjpeg-turbo's checks (on reading it and on building decoding tables)."""
    dc, ac = set(), set()
    at = 0
    while at < len(body):
        if at + 17 > len(body):
            return "has a bogus Huffman table length", dc, ac
        index = body[at]
        bits = body[at + 1 : at + 17]
        count = sum(bits)
        if index & 0xEF > 3:
            return f"has a bogus Huffman table index ({index})", dc, ac
        if count > 256 or at + 17 + count > len(body):
            return "has a bogus Huffman table definition", dc, ac
        code = 0
        for length in range(16):
            code = (code + bits[length]) << 1
            # Codes of each length must fit in that many bits, all-ones excluded.
            if code >= 2 << (length + 1):
                return "has a bogus Huffman table (overfull code lengths)", dc, ac
        is_dc = not index & 0x10
        if is_dc and count and max(body[at + 17 : at + 17 + count]) > 15:
            return "has a bogus DC Huffman table (symbol over 15)", dc, ac
        (dc if is_dc else ac).add(index & 0x0F)
        at += 17 + count
    return None, dc, ac


def _quant_tables(body: bytes) -> tuple:
    """``(problem, table ids)`` of a DQT segment."""
    ids = set()
    at = 0
    while at < len(body):
        index = body[at]
        if index & 0x0F > 3 or index >> 4 > 1:
            return f"has a bogus quantization table index ({index})", ids
        size = 128 if index >> 4 else 64
        if at + 1 + size > len(body):
            return "has a bogus quantization table length", ids
        ids.add(index & 0x0F)
        at += 1 + size
    return None, ids


def _frame(body: bytes, marker: int) -> tuple:
    """``(problem, {component id: quant table}, {id: blocks per MCU}, progressive)``."""
    if len(body) < 6:
        return "has a bogus frame header length", None, None, False
    precision, height, width, count = struct.unpack(">BHHB", body[:6])
    if precision != 8:
        return f"has {precision}-bit samples", None, None, False
    if height == 0 or width == 0 or count == 0:
        return "has an empty frame (0 rows, columns or components)", None, None, False
    if height > _JPEG_MAX_DIMENSION or width > _JPEG_MAX_DIMENSION:
        return f"is too large for libjpeg ({width} x {height})", None, None, False
    if count not in (1, 3) or len(body) != 6 + 3 * count:
        return "has a bogus frame header", None, None, False
    if width * height * count >= _TF_JPEG_MAX_BYTES:
        return "is too large for TensorFlow's JPEG decoder", None, None, False
    tables, blocks = {}, {}
    for k in range(count):
        cid, factors, table = body[6 + 3 * k : 9 + 3 * k]
        h, v = factors >> 4, factors & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            return "has bogus sampling factors", None, None, False
        if cid in tables:
            return "has two components with one id", None, None, False
        tables[cid] = table
        blocks[cid] = h * v
    return None, tables, blocks, marker == 0xC2


class _Jpeg:
    """What libjpeg knows while it reads a file: tables, frame, scans so far."""

    __slots__ = ("quant", "dc", "ac", "frame", "blocks", "progressive", "scans", "single")

    def __init__(
        self,
        quant=(),
        dc=(),
        ac=(),
        frame=None,
        blocks=None,
        progressive=False,
        scans=0,
        single=False,
    ):
        self.quant, self.dc, self.ac = set(quant), set(dc), set(ac)
        self.frame, self.blocks, self.progressive = frame, blocks, progressive
        self.scans, self.single = scans, single

    def snapshot(self) -> tuple:
        return (
            frozenset(self.quant),
            frozenset(self.dc),
            frozenset(self.ac),
            self.frame,
            self.blocks,
            self.progressive,
            self.scans,
            self.single,
        )

    def scan(self, body: bytes) -> str | None:
        """Check a scan header (SOS) against the tables and frame read so far."""
        frame = self.frame
        if frame is None:
            return "has a scan before its frame header"
        count = body[0] if body else 0
        if not 1 <= count <= 4 or len(body) != 4 + 2 * count:
            return "has a bogus scan header"
        ids = body[1 : 1 + 2 * count : 2]
        selectors = body[2 : 2 + 2 * count : 2]
        ss, se, approx = body[1 + 2 * count], body[2 + 2 * count], body[3 + 2 * count]
        if len(set(ids)) != count or any(cid not in frame for cid in ids):
            return "has a scan naming an unknown component"
        if count > 1 and sum(self.blocks[cid] for cid in ids) > 10:
            return "has sampling factors too large for an interleaved scan"
        if any(frame[cid] not in self.quant for cid in ids):
            return "uses an undefined quantization table"
        if self.scans and self.single:
            return "has a second scan after a complete one"
        if self.progressive:
            ah, al = approx >> 4, approx & 15
            if (ss == 0 and se != 0) or (ss != 0 and (ss > se or se > 63 or count != 1)):
                return f"has bogus progressive parameters (Ss={ss} Se={se})"
            if (ah and al != ah - 1) or al > 13:
                return f"has bogus progressive parameters (Ah={ah} Al={al})"
            need_dc, need_ac = ss == 0 and ah == 0, ss != 0
        else:
            if ss != 0 or se != 63 or approx:
                return "has bogus sequential scan parameters"
            need_dc = need_ac = True
        for selector in selectors:
            if need_dc and selector >> 4 not in self.dc:
                return "uses an undefined DC Huffman table"
            if need_ac and selector & 15 not in self.ac:
                return "uses an undefined AC Huffman table"
        if not self.scans:
            self.single = not self.progressive and count == len(frame)
        self.scans += 1
        return None


def _after_entropy_data(data: bytes, pos: int) -> int:
    """Where the marker ending the entropy-coded data at ``pos`` starts (its
    last 0xFF), or -1 if the data runs to the end of the file. Stuffed zeros
    and restart markers are part of the data."""
    n = len(data)
    find = data.find
    while True:
        pos = find(b"\xff", pos)
        if pos < 0:
            return -1
        nxt = pos + 1
        while nxt < n and data[nxt] == 0xFF:
            nxt += 1
        if nxt >= n:
            return -1
        byte = data[nxt]
        if byte and not 0xD0 <= byte <= 0xD7:
            return nxt - 1
        pos = nxt + 1


def jpeg_least_bytes(width: int, height: int) -> int:
    """The fewest bytes a whole JPEG of ``width`` x ``height`` pixels can take.

    Every 8x8 block of every component takes at least one bit (its DC code),
    and no component has fewer blocks than one subsampled 4x each way. A file
    with less is cut short or damaged, which libjpeg would decode as grey
    without complaint, at whatever cost its declared size asks.
    """
    return -(-width // 32) * -(-height // 32) // 8


def jpeg_problem(data: bytes) -> str | None:
    """None if libjpeg-turbo (as TensorFlow calls it) decodes ``data``; else why not.

    Only baseline, extended and progressive Huffman-coded 8-bit JPEGs with 1 or
    3 components can pass (the scan gives anything else to Pillow anyway).
    """
    if data[:2] != b"\xff\xd8":
        return "does not start with a JPEG start-of-image marker"
    # Most files of a dataset share everything up to their first scan's data:
    # that prefix is walked once.
    sos = data.find(b"\xff\xda")
    prefix = None
    if 0 < sos < len(data) - 4:
        prefix = data[: sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")]
        known = _PREFIXES.get(prefix)
        if known is not None:
            end = _after_entropy_data(data, len(prefix))
            if end > 0 and data[end + 1] == 0xD9:
                return None  # the usual case: one scan, then the end-of-image marker
            return _walk(data, len(prefix), _Jpeg(*known), None)
    return _walk(data, 2, _Jpeg(), prefix)


def _walk(data: bytes, pos: int, state: _Jpeg, prefix: bytes | None) -> str | None:  # noqa: C901
    """Read markers from ``pos`` (just after a scan header if ``state`` has
    scans) to the end-of-image marker, as libjpeg-turbo would."""
    n = len(data)
    if state.scans:
        pos = _after_entropy_data(data, pos)
        if pos < 0:
            return "ends inside image data, before its end-of-image marker (truncated)"
    while True:
        if pos + 1 >= n:
            return "ends before its end-of-image marker (truncated)"
        if data[pos] != 0xFF:
            return "has bytes between markers"
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            return "ends before its end-of-image marker (truncated)"
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return None if state.scans else "has no image data (end-of-image before any scan)"
        if marker == 0xD8:
            return "has a second start-of-image marker"
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # RSTn, TEM: no length
        if pos + 2 > n:
            return "ends inside a marker (truncated)"
        end = pos + ((data[pos] << 8) | data[pos + 1])
        if end < pos + 2:
            return f"has a bogus marker length in marker 0x{marker:02x}"
        if end > n:
            return "ends inside a marker segment (truncated)"
        body = data[pos + 2 : end]
        pos = end
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            continue  # APPn, COM: skipped by length
        if marker == 0xC4:  # DHT
            found = _HUFFMAN.get(body) or _remember(_HUFFMAN, body, _huffman_tables(body))
            if found[0]:
                return found[0]
            state.dc |= found[1]
            state.ac |= found[2]
        elif marker == 0xDB:  # DQT
            found = _QUANT.get(body) or _remember(_QUANT, body, _quant_tables(body))
            if found[0]:
                return found[0]
            state.quant |= found[1]
        elif marker in (0xC0, 0xC1, 0xC2):  # SOF: baseline, extended, progressive
            if state.frame is not None:
                return "has two frame headers"
            problem, state.frame, state.blocks, state.progressive = _frame(body, marker)
            if problem:
                return problem
        elif marker == 0xDA:  # SOS
            problem = state.scan(body)
            if problem:
                return problem
            if prefix is not None and state.scans == 1 and pos == len(prefix):
                _remember(_PREFIXES, prefix, state.snapshot())
            pos = _after_entropy_data(data, pos)
            if pos < 0:
                return "ends inside image data, before its end-of-image marker (truncated)"
        elif marker == 0xDD:  # DRI
            if len(body) != 2:
                return "has a bogus restart interval length"
        elif 0xC3 <= marker <= 0xCF:
            return f"uses an unsupported coding (marker 0x{marker:02x})"
        else:
            return f"has an unsupported marker 0x{marker:02x}"


# -------------------------------------------------------------------- PNG
# Chunk names libpng knows as critical; any other critical chunk fails.
_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
# libpng's limits: 1,000,000 pixels a side and 8 MB for an ancillary chunk.
_PNG_MAX_SIDE = 1_000_000
_PNG_MAX_CHUNK = 8_000_000
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_FILTERS = b"\x00\x01\x02\x03\x04"
_PIECE = 1 << 20


def _rows(width: int, height: int, bytes_per_pixel: int, interlaced: bool):
    """``(start, end, stride)`` of each pass's rows in the inflated data: the
    filter byte of each row is at ``start + k * stride``."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    out, start = [], 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w <= 0 or h <= 0:
            continue
        stride = 1 + w * bytes_per_pixel
        out.append((start, start + h * stride, stride))
        start += h * stride
    return out, start


def _inflate_problem(chunks: list[bytes], rows, expected: int) -> str | None:
    """Inflate the image data in pieces of at most 1 MB; check its size and
    that every row starts with a known filter."""
    inflater = zlib.decompressobj()
    offset = 0
    pending = b"".join(chunks)
    try:
        while not inflater.eof:
            piece = inflater.decompress(pending, _PIECE)
            pending = inflater.unconsumed_tail
            if not piece:
                if inflater.eof:
                    break
                # All input consumed and the stream is not finished.
                return f"has image data that ends early ({offset} of {expected} bytes)"
            end = offset + len(piece)
            if end > expected:
                return "holds more image data than its size needs"
            for start, stop, stride in rows:
                first = max(start, offset)
                first += (start - first) % stride
                last = min(stop, end)
                if first < last and piece[first - offset : last - offset : stride].translate(
                    None, _FILTERS
                ):
                    return "has a row with an unknown filter type"
            offset = end
    except zlib.error as exc:
        return f"has damaged image data ({exc})"
    if offset != expected:
        return f"has {offset} bytes of image data where its size needs {expected}"
    return None


def png_problem(data: bytes) -> str | None:
    """None if libpng (as TensorFlow calls it) decodes ``data``; else why not.

    Only 8-bit grey, RGB and RGBA PNGs can pass (the scan gives every other
    PNG to Pillow anyway).
    """
    n = len(data)
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "does not start with the PNG signature"
    pos = 8
    header = None
    idat: list[bytes] = []
    idat_done = palette = False
    while True:
        if pos + 12 > n:
            return "ends before its IEND chunk (truncated)"
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length > 0x7FFFFFFF:
            return "has a chunk length out of range"
        if not kind.isalpha():
            return f"has an invalid chunk type {kind!r}"
        end = pos + 8 + length
        if end + 4 > n:
            return f"ends inside its {kind.decode()} chunk (truncated)"
        body = data[pos + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(kind + body) != crc:
            return f"has a CRC error in its {kind.decode()} chunk"
        pos = end + 4
        critical = kind[0] < 0x61  # upper-case first letter
        if header is None:
            if kind != b"IHDR" or length != 13:
                return "does not start with an IHDR chunk"
            width, height, depth, colour, compression, filtering, interlace = struct.unpack(
                ">IIBBBBB", body
            )
            if not (0 < width <= _PNG_MAX_SIDE and 0 < height <= _PNG_MAX_SIDE):
                return f"has a size libpng refuses ({width} x {height})"
            if depth != 8 or colour not in (0, 2, 6) or compression or filtering or interlace > 1:
                return "is not an 8-bit grey, RGB or RGBA PNG"
            header = (width, height, {0: 1, 2: 3, 6: 4}[colour], interlace == 1)
            continue
        if kind == b"IHDR":
            return "has a second IHDR chunk"
        if kind == b"IDAT":
            if idat_done:
                return "has IDAT chunks that are not consecutive"
            idat.append(body)
            continue
        if idat:
            idat_done = True
        if kind == b"IEND":
            break
        if kind == b"PLTE":
            if palette or idat:
                return "has a misplaced or second PLTE chunk"
            palette = True
        elif critical:
            return f"has an unknown critical chunk {kind!r}"
        elif length > _PNG_MAX_CHUNK:
            return f"has an ancillary chunk {kind!r} over libpng's 8 MB limit"
    if not idat:
        return "has no image data (no IDAT chunk)"
    width, height, bytes_per_pixel, interlaced = header
    rows, expected = _rows(width, height, bytes_per_pixel, interlaced)
    return _inflate_problem(idat, rows, expected)
