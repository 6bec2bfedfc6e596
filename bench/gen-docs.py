#!/usr/bin/env python3
"""Deterministic document-heavy scan corpus (issue 17): the containers mail malware arrives in.

Creates ~SIZE MiB of files under OUT, a mix (by count) of:
  pdf/*.pdf    PDF 1.7, FlateDecode text streams, an ASCIIHex stream, an embedded file
  ole/*.doc    OLE2 compound files (512-byte sectors): a WordDocument stream of text, a Data
               stream of binary, a \\x01Ole10Native packaged file
  docx/*.docx  OOXML-like zips: XML parts (deflate), a media file, embeddings
  rtf/*.rtf    RTF text with an \\objdata OLE1 Package object (hex) holding a file
  html/*.html  HTML with inline scripts, base64 data: URIs (HTML smuggling's shape)
  iso/*.iso    ISO 9660 images (primary volume, a directory, several files)
File sizes are log-uniform between 16 KiB and 2 MiB. The corpus is a pure function of --seed
and --size-mb. No file contains the EICAR string; a clean database reports 0 infections.

Usage: gen-docs.py --out DIR [--size-mb 128] [--seed 1]
"""
import argparse
import base64
import io
import math
import os
import random
import struct
import zipfile
import zlib

def _corpus_generator():
    """The synthetic corpus generator beside this file (its word list and text lines)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_corpus", os.path.join(os.path.dirname(__file__), "gen-corpus.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _corpus_generator()


def text(rng, n):
    return GEN.text_bytes(rng, n)


def binary(rng, n):
    return rng.randbytes(n)


def pdf(rng, size):
    objs = []
    body = text(rng, size // 2)
    objs.append(b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(a.bin) 5 0 R] >> >> >>")
    objs.append(b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
    objs.append(b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>")
    content = zlib.compress(body)
    objs.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream")
    objs.append(b"<< /Type /Filespec /F (a.bin) /EF << /F 6 0 R >> >>")
    emb = zlib.compress(binary(rng, size // 8) + text(rng, size // 8))
    objs.append(b"<< /Type /EmbeddedFile /Length %d /Filter /FlateDecode >>\nstream\n" % len(emb) + emb + b"\nendstream")
    hexed = binary(rng, size // 16).hex().encode() + b">"
    objs.append(b"<< /Length %d /Filter /ASCIIHexDecode >>\nstream\n" % len(hexed) + hexed + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + o + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref))
    return out.getvalue()


def ole2(rng, size):
    """A version 3 compound file: every stream at least 4096 bytes (no mini stream)."""
    native_file = binary(rng, 4096)
    native = struct.pack("<I", 0) + b"\x02\x00" + b"payload.bin\x00" + b"C:\\payload.bin\x00" + b"\x00\x00\x03\x00"
    native += struct.pack("<I", 15) + b"C:\\payload.bin\x00" + struct.pack("<I", len(native_file)) + native_file
    native = struct.pack("<I", len(native) - 4) + native[4:]
    native = native.ljust(4096, b"\0")
    streams = [("WordDocument", text(rng, max(4096, size // 2))), ("Data", binary(rng, max(4096, size // 3))),
               ("\x01Ole10Native", native)]
    sec = 512
    data = b""
    starts = []
    for _, s in streams:
        starts.append(len(data) // sec)
        data += s.ljust((len(s) + sec - 1) // sec * sec, b"\0")
    nstream = len(data) // sec
    dir_sector = nstream
    ndir = 1  # 4 entries of 128 bytes
    total = nstream + ndir
    nfat = 1
    while nfat * 128 < total + nfat:
        nfat += 1
    fat_start = total
    fat = []
    for (_, s), st in zip(streams, starts):
        n = (len(s) + sec - 1) // sec
        fat += [st + i + 1 for i in range(n - 1)] + [0xFFFFFFFE]
    fat += [0xFFFFFFFE]  # directory
    fat += [0xFFFFFFFD] * nfat
    fat += [0xFFFFFFFF] * (nfat * 128 - len(fat))

    def entry(name, kind, child, left, right, start, length):
        n = name.encode("utf-16-le") + b"\0\0" if name else b""
        e = n.ljust(64, b"\0") + struct.pack("<HBB", len(n), kind, 1)
        e += struct.pack("<III", left, right, child) + b"\0" * 16 + b"\0" * 4 + b"\0" * 16
        e += struct.pack("<II", start, length) + b"\0" * 4
        return e
    none = 0xFFFFFFFF
    dirs = entry("Root Entry", 5, 2, none, none, 0xFFFFFFFE, 0)
    # a balanced enough tree: Data as root child, WordDocument left, Ole10Native right
    dirs += entry("WordDocument", 2, none, none, none, starts[0], len(streams[0][1]))
    dirs += entry("Data", 2, none, 1, 3, starts[1], len(streams[1][1]))
    dirs += entry("\x01Ole10Native", 2, none, none, none, starts[2], len(streams[2][1]))
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
    header += b"\0" * 6 + struct.pack("<IIIIIIIII", 0, nfat, dir_sector, 0, 4096, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0)
    difat = [fat_start + i for i in range(nfat)] + [0xFFFFFFFF] * (109 - nfat)
    header += struct.pack("<109I", *difat)
    fat_bytes = struct.pack("<%dI" % len(fat), *fat)
    return header + data + dirs + fat_bytes


def docx(rng, size):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        def put(name, data):
            zi = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
        put("[Content_Types].xml", b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        paras = b"".join(b"<w:p><w:r><w:t>" + t + b"</w:t></w:r></w:p>" for t in text(rng, size // 2).split(b"\n"))
        put("word/document.xml", b'<?xml version="1.0"?><w:document><w:body>' + paras + b"</w:body></w:document>")
        put("word/media/image1.bin", binary(rng, size // 4))
        put("word/embeddings/oleObject1.bin", ole2(rng, size // 8))
    return out.getvalue()


def rtf(rng, size):
    payload = binary(rng, size // 8)
    pkg = b"\x02\x00" + b"file.bin\x00" + b"C:\\file.bin\x00" + b"\x00\x00\x03\x00"
    pkg += struct.pack("<I", 12) + b"C:\\file.bin\x00" + struct.pack("<I", len(payload)) + payload + b"\x00\x00"
    ole1 = struct.pack("<II", 0x501, 2) + struct.pack("<I", 8) + b"Package\x00" + struct.pack("<II", 0, 0)
    ole1 += struct.pack("<I", len(pkg)) + pkg
    body = text(rng, size // 3).replace(b"\n", b"\\par\n")
    return (b"{\\rtf1\\ansi\\deff0 {\\fonttbl{\\f0 Times;}}\n" + body + b"{\\object\\objemb{\\*\\objclass Package}{\\*\\objdata "
            + ole1.hex().encode() + b"}}\n}")


def html(rng, size):
    blob = base64.b64encode(binary(rng, size // 4)).decode()
    script = "var parts = [" + ",".join('"%s"' % blob[i:i + 76] for i in range(0, len(blob), 76)) + "];"
    para = "".join("<p>%s</p>\n" % line for line in text(rng, size // 3).decode().split("\n"))
    uri = base64.b64encode(binary(rng, size // 8)).decode()
    return ("<!DOCTYPE html><html><head><title>Invoice</title><script>%s\nvar b = atob(parts.join(''));</script></head>"
            "<body>%s<a download=\"invoice.bin\" href=\"data:application/octet-stream;base64,%s\">open</a></body></html>"
            % (script, para, uri)).encode()


def iso(rng, size):
    S = 2048
    files = [("README.TXT;1", text(rng, size // 4)), ("DATA.BIN;1", binary(rng, size // 4)),
             ("SETUP.EXE;1", binary(rng, size // 8))]
    first = 20  # root directory
    sub = 21
    at = 22
    layout = []
    for name, data in files:
        layout.append((name, at, data))
        at += (len(data) + S - 1) // S
    img = bytearray(at * S)
    pvd = 16 * S
    img[pvd] = 1
    img[pvd + 1:pvd + 6] = b"CD001"
    img[pvd + 6] = 1

    def record(name, extent, length, is_dir):
        n = name if isinstance(name, bytes) else name.encode()
        ln = 33 + len(n) + (len(n) + 1) % 2
        r = bytearray(ln)
        r[0] = ln
        r[2:10] = struct.pack("<I", extent) + struct.pack(">I", extent)
        r[10:18] = struct.pack("<I", length) + struct.pack(">I", length)
        r[25] = 2 if is_dir else 0
        r[32] = len(n)
        r[33:33 + len(n)] = n
        return bytes(r)
    img[pvd + 156:pvd + 190] = record(b"\0", first, S, True)
    img[17 * S] = 255
    img[17 * S + 1:17 * S + 6] = b"CD001"
    root = record(b"\0", first, S, True) + record(b"\1", first, S, True) + record("DOCS", sub, S, True)
    img[first * S:first * S + len(root)] = root
    subdir = record(b"\0", sub, S, True) + record(b"\1", first, S, True)
    for name, extent, data in layout:
        subdir += record(name, extent, len(data), False)
        img[extent * S:extent * S + len(data)] = data
    img[sub * S:sub * S + len(subdir)] = subdir
    return bytes(img)


KINDS = [("pdf", "pdf", pdf), ("ole", "doc", ole2), ("docx", "docx", docx), ("rtf", "rtf", rtf),
         ("html", "html", html), ("iso", "iso", iso)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size-mb", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for d, _, _ in KINDS:
        os.makedirs(os.path.join(a.out, d), exist_ok=True)
    total, i = 0, 0
    while total < a.size_mb * 1024 * 1024:
        d, ext, make = KINDS[i % len(KINDS)]
        size = GEN.rand_size(rng, 16 * 1024, 2 * 1024 * 1024)
        data = make(rng, size)
        with open(os.path.join(a.out, d, "%05d.%s" % (i, ext)), "wb") as f:
            f.write(data)
        total += len(data)
        i += 1
    print("%d files, %.1f MiB" % (i, total / 1048576))


if __name__ == "__main__":
    main()
