#!/usr/bin/env python3
"""Random pages with `jscript.encode` scripts, for the decoder's comparison with libclamav
(scripts/html-normalise-oracle.sh): scripts encoded with the measured tables
(crates/scan/src/html/screnc_tables.rs) — escapes (`@!`, `@*`, `@&`, `@#`, `@$`, and unknown
ones), multi-byte characters, raw line breaks, headers whose length is right, short, long or
not base64, checksum and end marker present or not, scripts longer than a chunk, `<script
language=…>` and ASP `<%@ language=… %>` pages.
Usage: screnc-generate.py SEED COUNT DIR"""
import base64, os, random, re, struct, sys
seed = int(sys.argv[1]); n = int(sys.argv[2]); out = sys.argv[3]
rng = random.Random(seed)
src = open(os.path.join(os.path.dirname(__file__), '../crates/scan/src/html/screnc_tables.rs')).read()
order = [int(x) for x in re.search(r'ORDER: \[u8; 64\] = \[(.*?)\];', src).group(1).split(',')]
tables = [dict((v, c) for c, v in re.findall(r'\((\d+), (\d+)\)', row)) for row in re.findall(r'    \[(\(.*?)\],', src)]
tables = [{int(v): int(c) for v, c in t.items()} for t in tables]
ESC = {'<': '@!', '>': '@*', '\n': '@&', '\r': '@#', '@': '@$'}


def encode(text):
    out, pos = [], 0
    for ch in text:
        if ch in ESC:
            out.append(ESC[ch])
        elif ord(ch) >= 0x80:
            out.append(ch)  # a multi-byte character's bytes pass as they are
            continue
        else:
            out.append(chr(tables[order[pos % 64]].get(ord(ch), ord(ch))))
        pos += 1
        if rng.random() < 0.003:
            out.append(rng.choice(['\r\n', '\n', '@x', '@']))
    return ''.join(out)


words = ['var', 'x', 'Foo', '=', '"AbC"', "'q'", 'document.write(x);', 'eval("y=1;")', '<b>', '</script>', '@', 'function f(a){return a}',
         ' ', '\n', '\r\n', '\t', 'é', '\xa0', '1.5', '//c ', '/* */', 'unescape("%41")', '&amp;', '>']


def script():
    text = ''.join(rng.choice(words) + rng.choice(['', ' ', ';']) for _ in range(rng.randint(1, 40)))
    if rng.random() < 0.05:
        text = text * rng.randint(100, 300)
    enc = encode(text)
    length = len(enc) + rng.choice([0, 0, 0, 0, -3, 5, 1000])
    head = base64.b64encode(struct.pack('<I', max(length, 0) & 0xffffffff)).decode()[:6]
    if rng.random() < 0.05:
        head = rng.choice(['!!!!!!', 'AA', '~~~~~~~~', 'zzzzzz'])
    tail = rng.choice(['AAAAAA==^#~@', 'AAAAAA==^#~@', '', 'zz==', 'AAAAAA==^#~@ more text'])
    return '#@~^' + head + '==' + enc + tail


def page():
    k = rng.random()
    lang = rng.choice(['jscript.encode', 'JScript.Encode', 'vbscript.encode', 'javascript'])
    if k < 0.7:
        body = '<script language="%s">%s</script>' % (lang, rng.choice(['', ' ', '\n']) + script())
    else:
        body = '<%@ language="' + lang + '" %>' + rng.choice(['\n', 'text ', '<p>x</p>']) + rng.choice(['', '<script>']) + script() + rng.choice(['', '</script>'])
    return '<html>' + rng.choice(['', '<p>before</p>']) + body + rng.choice(['', '<p>after &amp; more</p>', script()])


os.makedirs(out, exist_ok=True)
for i in range(n):
    doc = page()
    open(f'{out}/screnc-{seed}-{i:04d}.html', 'wb').write(doc.encode('latin-1', 'replace') if rng.random() < 0.5 else doc.encode('utf-8'))
