#!/usr/bin/env python3
"""Random HTML pages with scripts, for the JavaScript normaliser's comparison with libclamav
(scripts/html-normalise-oracle.sh): keywords, identifiers (\\u escapes, $, _), numbers (ints
past 32 bits, floats, exponents), strings with every escape (unterminated too), comments of
both kinds, operators, unbalanced brackets, function declarations and expressions, var lists,
member names, "a" + "b" folding, unescape(), eval() with nested code, dF(), the p,a,c,k,e,r
packer, several scripts a page, scripts longer than a chunk, line breaks and 8-bit bytes.
Usage: js-generate.py SEED COUNT DIR"""
import random, sys, os
seed = int(sys.argv[1]); n = int(sys.argv[2]); out = sys.argv[3]
rng = random.Random(seed)
kw = ['var', 'function', 'return', 'if', 'else', 'new', 'this', 'typeof', 'null', 'true', 'in', 'for', 'while', 'int', 'class', 'Function', 'VAR']
ops = ['=', '+', '-', '*', '/', '%', '==', '===', '!=', '!==', '<', '>', '<=', '>>>=', '&&', '||', '!', '?', ':', '++', '--', '+=', '^', '~', '|', '&', '<<', '>>>']
punct = ['(', ')', '{', '}', '[', ']', ',', ';', '.', '.']
names = ['a', 'b', 'x', 'Foo', 'document', 'write', 'eval', 'unescape', 'dF', 'p', 'c', 'k', 'e', 'r', '$x', '_y', 'n000', 'x\\u0041', 'ab\\c', 'z9']
def string():
    q = rng.choice(['"', "'"])
    body = ''.join(rng.choice(['Ab', ' ', 'c\\x41', '\\u00e9', '\\n', '\\t', '\\0', '\\\\', '\\' + q, '%41', '%u0042', 'é', '\\x4', '\\q', "'" if q == '"' else '"', '<b>', '|']) for _ in range(rng.randint(0, 5)))
    return q + body + (q if rng.random() < 0.95 else '')
def number():
    return rng.choice(['0', '7', '42', '010', '3.5', '1.', '2.50e3', '1e5', '1.5e', '6.02E+23', '4294967296', '99999999999999999999', '0x1F', '1.2.3', '123456789.123', '0.00001'])
def token():
    k = rng.random()
    if k < 0.15: return rng.choice(kw)
    if k < 0.35: return rng.choice(names)
    if k < 0.5: return rng.choice(ops)
    if k < 0.68: return rng.choice(punct)
    if k < 0.78: return string()
    if k < 0.86: return number()
    if k < 0.9: return rng.choice(['/* c */', '// line ', '//x\n', '/*', '*/', '<!--', '-->'])
    return rng.choice([' ', '  ', '\n', '\r\n', '\t', '\xa0'])
def statement(depth=0):
    k = rng.random()
    if k < 0.25:
        return 'var ' + ', '.join(rng.choice(names[:6]) + rng.choice(['', ' = ' + rng.choice([string(), number(), '[1, a]', 'x.y', 'a + b'])]) for _ in range(rng.randint(1, 3))) + rng.choice([';', '', ';\n'])
    if k < 0.4 and depth < 3:
        head = 'function' + rng.choice([' ' + rng.choice(names[:8]), '']) + '(' + ', '.join(rng.sample(names[:6], rng.randint(0, 3))) + ')'
        return head + ' { ' + ' '.join(statement(depth + 1) for _ in range(rng.randint(0, 3))) + ' }'
    if k < 0.5: return string() + ' + ' + string() + rng.choice(['', ' + ' + string(), ' + x'])
    if k < 0.56: return 'unescape(' + string() + ')'
    if k < 0.63 and depth < 3: return 'eval("' + ' '.join(statement(depth + 1) for _ in range(rng.randint(1, 2))).replace('\\', '\\\\').replace('"', '\\"') + '");'
    if k < 0.66: return 'dF(\'' + ''.join(rng.choice(['%42', '%43', 'tux', '%7F', 'B']) for _ in range(rng.randint(0, 6))) + rng.choice('0123') + '\')'
    if k < 0.7: return packer()
    return ' '.join(token() for _ in range(rng.randint(1, 12)))
def packer():
    words = [rng.choice(['var', 'alert', 'x', 'document', 'write', '', 'Hi']) for _ in range(rng.randint(1, 8))]
    p = ' '.join(rng.choice(['0', '1', '2', '3', 'a', 'B', '9', '10']) + rng.choice(['(', ')', ';', '.', '="', '\\\'']) for _ in range(rng.randint(1, 6)))
    name = rng.choice(['', ' unpack', ' f'])
    call = "('%s',%s,%d,'%s'.split('|'),0,{}))" % (p, rng.choice(['10', '36', '62', 'x']), len(words), '|'.join(words))
    if name:
        return 'function%s(p,a,c,k,e,%s){return p}%s' % (name, rng.choice(['r', 'd']), name.strip() + call[:-1])
    return 'eval(function(p,a,c,k,e,%s){while(c--)if(k[c])p=p;return p}%s' % (rng.choice(['r', 'd']), call)
def script():
    tag = rng.choice(['script', 'SCRIPT', 'script language="javascript"', 'script type="text/javascript"'])
    body = '\n'.join(statement() for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.08: body = body + ' ' + ' '.join(statement() for _ in range(600))
    end = rng.choice(['</script>', '</SCRIPT>', '</script >', '']) if rng.random() < 0.97 else ''
    return '<' + tag + '>' + body + end
os.makedirs(out, exist_ok=True)
for i in range(n):
    doc = '<html><body>' + ''.join(rng.choice([script, script, lambda: '<p>text</p>', lambda: '\n']) () for _ in range(rng.randint(1, 4)))
    open(f'{out}/js-{seed}-{i:04d}.html', 'wb').write(doc.encode('latin-1', 'replace') if rng.random() < 0.3 else doc.encode('utf-8'))
