#!/usr/bin/env python3
"""Random HTML documents for the normaliser's comparison with libclamav
(scripts/html-normalise-oracle.sh): tags in both cases, attributes quoted three ways, comments,
scripts and styles, entities (named, numeric, unknown, unterminated), white space and line
breaks, 8-bit and NUL bytes, data: URIs, encoded-script languages and lines longer than a chunk.
Usage: html-generate.py SEED COUNT DIR"""
import random, sys, os
seed=int(sys.argv[1]); n=int(sys.argv[2]); out=sys.argv[3]
rng=random.Random(seed)
tags=['html','HEAD','body','p','a','img','div','SCRIPT','script','style','b','i','span','form','iframe','table','td','br','meta','title']
ents=['amp','lt','gt','quot','nbsp','eacute','Alpha','bogus','AMP','copy','hellip','x','','rarr']
def text():
    parts=[]
    for _ in range(rng.randint(0,6)):
        k=rng.randint(0,12)
        if k<5: parts.append(rng.choice(['Hello','World','foo','BAR','x=1','a.b','café','日本','<3','>','"q"',"'s'"]))
        elif k==5: parts.append(rng.choice([' ','  ','\n','\r\n','\t',' \n ']))
        elif k==6: e=rng.choice(ents); parts.append('&'+e+rng.choice([';',';',' ','']))
        elif k==7: parts.append(rng.choice(['&#65;','&#x42;','&#300;','&#x3002;','&#0;','&#;','&#x;','&#12345678901234567890;']))
        elif k==8: parts.append(rng.choice(['\x00','\x01','\xa1C','\xe9','\xff\xfe']))
        else: parts.append(' ')
    return ''.join(parts)
def attr():
    name=rng.choice(['href','src','HREF','onclick','language','class','data-x','style'])
    v=rng.choice(['http://Ex.COM/a','data:text/plain;base64,QUJD','"data:x,hi"','javascript:alert(1)','a b','&amp;x','jscript.encode',"it's",'x\\"y'])
    q=rng.choice(['"',"'",'',''])
    if rng.random()<0.2: return ' '+name
    return ' '+name+rng.choice(['=',' = ','='])+q+v+q
def element(depth=0):
    t=rng.choice(tags)
    s='<'+rng.choice(['',' '])+t+''.join(attr() for _ in range(rng.randint(0,3)))+rng.choice(['>',' >','/>'])
    k=rng.random()
    if t.lower() in ('script','style'):
        s+=rng.choice(['var X = "AbC";  document.write(X);','if (a<b) { x = \'<b>\'; }','<!-- hidden -->x','</b>y'])
    elif depth<3 and k<0.6:
        s+=''.join(rng.choice([text, lambda: element(depth+1), lambda: '<!--'+text()+'-->', lambda: '<!DOCTYPE html>'])() for _ in range(rng.randint(0,4)))
    s+='</'+t+rng.choice(['>',' >'])
    return s
os.makedirs(out, exist_ok=True)
for i in range(n):
    doc='<html>'+''.join(rng.choice([text, element, element])() for _ in range(rng.randint(1,8)))
    if rng.random()<0.1: doc=('x'*rng.randint(8000,8300))+' '+doc+('<p>'+'y'*9000+'</p>')
    open(f'{out}/gen-{seed}-{i:04d}.html','wb').write(doc.encode('latin-1','replace') if rng.random()<0.3 else doc.encode('utf-8'))
