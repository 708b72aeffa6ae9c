#!/usr/bin/env python3
"""Import circles among mmssl-protocol's top-level modules at a git revision (the logic of
crates/mmssl-protocol/tests/layers.rs). Usage: modgraph.py REV"""
import re, subprocess, sys
rev = sys.argv[1]
src = 'crates/mmssl-protocol/src/'
files = subprocess.run(['git','ls-tree','-r','--name-only',rev,src],capture_output=True,text=True).stdout.split()
files = [f for f in files if f.endswith('.rs')]
def mod(f):
    first = f[len(src):].split('/')[0]
    return None if first == 'lib.rs' else first[:-3] if first.endswith('.rs') else first
mods = {mod(f) for f in files if not f.endswith('_tests.rs')} - {None}
g = {m:set() for m in mods}
for f in files:
    m = mod(f); name = f.rsplit('/',1)[1]
    if m is None or name == 'tests.rs' or name.endswith('_tests.rs'): continue
    t = subprocess.run(['git','show',f'{rev}:{f}'],capture_output=True,text=True).stdout
    t = t.split('#[cfg(test)]\nmod tests {')[0]
    t = '\n'.join(l for l in t.split('\n') if not l.lstrip().startswith('//'))
    for i in [x.start() for x in re.finditer(r'crate::', t)]:
        if t[:i].endswith('mmssl_') or t[:i].endswith('_'): continue
        rest = t[i+7:]
        if rest.startswith('{'):
            names = [s.strip().split('::')[0] for s in rest[1:].split('}')[0].split(',')]
        else:
            names = [re.split(r'[^A-Za-z0-9_]', rest)[0]]
        for n in names:
            if n in mods and n != m: g[m].add(n)
def reach(s):
    seen=set(); st=list(g[s])
    while st:
        x=st.pop()
        if x not in seen: seen.add(x); st+=list(g[x])
    return seen
on = sorted(m for m in g if m in reach(m))
# strongly connected components among those on circles
sccs=[]; left=set(on)
while left:
    m=left.pop(); comp={m}|{x for x in reach(m) if m in reach(x)}
    left-=comp; sccs.append(sorted(comp))
print(f'{rev}: {len(mods)} modules, {len(sccs)} circles, {len(on)} modules on a circle: {sccs}')
