#!/usr/bin/env python3
"""Measures the substitution tables of Microsoft's script encoder (`jscript.encode`) as
libclamav decodes it, with clamscan (Debian's clamav) as the oracle, and writes
crates/scan/src/html/screnc_tables.rs. Nothing is copied from libclamav: encoded scripts are
written, clamscan decodes them (--leave-temps keeps its normalised forms), and the tables are
read back from what it wrote.

1. For each source byte (tab, 0x20-0x7f except '@'), a script holds it at every position 0-63
   between '>' (the encoder's escape '@*'); nocomment.html shows each decoded byte, lower-cased:
   the positions group into three tables (the order of tables by position), and each table's
   byte for each source, up to case and up to ' vs " (scripts' quotes are normalised) and
   space vs tab (both invisible there).
2. The ambiguous sources are placed, in one encoded script, after a decoded
   `</script><a href=data:,` (each letter of `data` tried in both cases until one works): the
   data: URI's bytes, which libclamav extracts as they are, give case and quotes.
3. Space or tab: a decoded `//` then the byte then `zz`: a space ends the JavaScript comment
   (libclamav's normalised script shows `zz`), a tab does not.
Usage: scripts/measure-screnc-tables.py (from the repository)."""
import base64, glob, os, shutil, struct, subprocess, sys, tempfile

OUT = 'crates/scan/src/html/screnc_tables.rs'
work = tempfile.mkdtemp()
os.makedirs(f'{work}/db')
open(f'{work}/db/d.ndb', 'w').write('Dummy.Sig:0:*:00112233445566778899\n')


def page(encoded):
    n = base64.b64encode(struct.pack('<I', len(encoded))).decode()[:6]
    return '<html><script language="jscript.encode">#@~^' + n + '==' + encoded + 'AAAAAA==^#~@</script></html>'


def clamscan(html):
    """The files clamscan's HTML normaliser writes for `html`: {name: bytes}."""
    d = tempfile.mkdtemp(dir=work)
    open(f'{d}/in.html', 'w', encoding='latin-1').write(html)
    os.makedirs(f'{d}/tmp')
    subprocess.run(['clamscan', '--leave-temps', f'--tempdir={d}/tmp', '-d', f'{work}/db', f'{d}/in.html'],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    for p in glob.glob(f'{d}/tmp/**/*', recursive=True):
        if os.path.isfile(p):
            name = 'rfc2397' if '/rfc2397/' in p else os.path.basename(p)
            out.setdefault(name, open(p, 'rb').read())
    shutil.rmtree(d)
    return out


def script_text(nocomment):
    start = nocomment.index(b'<script language="javascript">') + len(b'<script language="javascript">')
    return nocomment[start:nocomment.rindex(b'</script>')]


# 1. each source at every position
sources = [9] + [c for c in range(0x20, 0x80) if c != 0x40]
seen = {}
for c in sources:
    ch = chr(c)
    if c in (0x3c, 0x3e):  # not encoded: measured to decode as themselves
        seen[c] = [ch] * 64
        continue
    body = script_text(clamscan(page(''.join(ch + '@*' for _ in range(32)) + '@*' + ''.join(ch + '@*' for _ in range(32))))['nocomment.html'])
    v = body.split(b'>')
    assert len(v) == 66 and v[32] == b'' and v[65] == b'', (hex(c), body)
    seen[c] = [v[j].decode('latin-1') for j in range(32)] + [v[33 + j].decode('latin-1') for j in range(32)]
    seen[c] = [seen[c][p // 2] if p % 2 == 0 else seen[c][32 + p // 2] for p in range(64)]
ref = seen[0x41]
labels = sorted(set(ref), key=ref.index)
assert len(labels) == 3
order = [labels.index(x) for x in ref]
tables = [dict() for _ in range(3)]
for c, vals in seen.items():
    for p, v in enumerate(vals):
        assert tables[order[p]].get(c, v) == v, (hex(c), p)
        tables[order[p]][c] = v


# 2. case and quotes through a data: URI
def source_for(q, ch, variant=0):
    k = order[q % 64]
    cands = [c for c, v in sorted(tables[k].items()) if v == ch or (ch.isalpha() and v == ch.lower())]
    return chr(cands[variant % len(cands)])


def encode(text, q=0, variants=None):
    out = []
    for ch in text:
        out.append({'<': '@!', '>': '@*', '\n': '@&'}.get(ch) or source_for(q, ch, (variants or {}).get(q, 0)))
        q += 1
    return ''.join(out), q


pending = {k: [c for c, v in t.items() if v.isalpha() or v == '"'] for k, t in enumerate(tables)}
prefix, q = encode('</script><a\nhref=data:,')
payload, placed = [], []
while any(pending.values()):
    k = order[q % 64]
    c = pending[k].pop() if pending[k] else next(c for c, v in tables[k].items() if v.isalpha())
    payload.append(chr(c)); placed.append((k, c)); q += 1
suffix, _ = encode('>', q)
for var in range(16):
    variants = {q: (var >> i) & 1 for i, q in enumerate(range(17, 21))}  # the letters of `data`
    prefix, _ = encode('</script><a\nhref=data:,', 0, variants)
    files = clamscan(page(prefix + ''.join(payload) + suffix))
    if 'rfc2397' in files:
        data = files['rfc2397'].split(b'\n\n', 1)[1]
        break
else:
    sys.exit('no data: URI was extracted')
assert len(data) == len(placed)
for (k, c), b in zip(placed, data):
    assert chr(b).lower() == tables[k][c].lower() or tables[k][c] in '"\''
    tables[k][c] = chr(b)

# 3. space or tab
for k in range(3):
    for c in [c for c, v in tables[k].items() if v == '']:
        start = next(q for q in range(64) if order[(q + 2) % 64] == k)
        pre, q = encode('x' * start + '//')
        post, _ = encode('zz;', q + 1)
        js = clamscan(page(pre + chr(c) + post))['javascript']
        tables[k][c] = ' ' if b'zz' in js else '\t'

for k, t in enumerate(tables):
    assert len(set(t.values())) == len(t) == 96, (k, sorted(t.values()))
lines = [
    "//! The substitution tables of Microsoft's script encoder as libclamav decodes it, measured with",
    "//! clamscan 1.4.6 by `scripts/measure-screnc-tables.py` (not copied from libclamav): which of",
    "//! the three tables each position (modulo 64) of the encoded text uses, and each table's byte",
    "//! for each encoded byte (tab, 0x20-0x7f but `@`, the escape; `<` and `>` are not encoded).",
    "",
    "/// The table each position uses.",
    "#[rustfmt::skip]",
    "pub(super) const ORDER: [u8; 64] = [" + ', '.join(map(str, order)) + "];",
    "",
    "/// Each table: (encoded byte, decoded byte), by encoded byte.",
    "#[rustfmt::skip]",
    "pub(super) const TABLES: [[(u8, u8); 96]; 3] = [",
]
for t in tables:
    lines.append('    [' + ', '.join(f'({c}, {ord(v)})' for c, v in sorted(t.items())) + '],')
lines.append('];')
open(OUT, 'w').write('\n'.join(lines) + '\n')
shutil.rmtree(work)
print(f'{OUT}: order and 3 tables of 96 bytes, measured with', subprocess.run(['clamscan', '--version'], capture_output=True, text=True).stdout.strip())
