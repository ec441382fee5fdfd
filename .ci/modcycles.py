#!/usr/bin/env python3
"""Fails when sibling modules of a Rust crate's src/ import each other in a cycle (issue 17: one-way
dependencies). Reads `crate::`/`super::`/`self::` paths in code (comments and test modules
skipped); a child naming its parent front door is structure, not a cycle.
Usage: .ci/modcycles.py host/src"""
import os,re,sys
root=sys.argv[1]
mods={}
for dp,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3]
        parts=rel.split(os.sep)
        if parts[-1] in ('mod','lib','main'): parts=parts[:-1]
        if parts and parts[-1]=='tests': continue
        mods[tuple(parts)]=p
def strip(s):
    s=re.sub(r'//[^\n]*','',s)
    s=re.sub(r'(?s)#\[cfg\(test\)\]\s*mod tests\s*\{.*','',s)
    s=re.sub(r'r#*"(?s:.*?)"#*','""',s)
    return s
def resolve(cur, path):
    segs=path.split('::')
    if segs[0]=='crate': base=(); segs=segs[1:]
    elif segs[0]=='super':
        base=cur
        while segs and segs[0]=='super': base=base[:-1]; segs=segs[1:]
    elif segs[0]=='self': base=cur; segs=segs[1:]
    else: return None
    best=None; m=base
    if m in mods: best=m
    for s in segs:
        m=m+(s,)
        if m in mods: best=m
        else: break
    return best
edges={m:set() for m in mods}
for m,p in mods.items():
    s=strip(open(p).read())
    # expand use groups crudely: capture crate::a::b and crate::a::{b, c}
    for mt in re.finditer(r'\b((?:crate|super|self)(?:::(?:super|\w+))*)(?:::\{([^}]*)\})?',s):
        head=mt.group(1); group=mt.group(2)
        targets=[head]
        if group:
            targets=[head+'::'+g.strip().split(' ')[0].split('::')[0] for g in group.split(',') if g.strip()]
        for t in targets:
            r=resolve(m,t)
            if r is not None and r!=m and not (len(r)<len(m) and m[:len(r)]==r):  # ignore refs to ancestors? keep parent refs
                edges[m].add(r)
            elif r is not None and r!=m and len(r)<len(m) and m[:len(r)]==r:
                edges[m].add(r)
# collapse parent-child: a child referencing its ancestor (its front door) and ancestor declaring child is structural; report cycles among siblings at each level
def level(mod, depth): return mod[:depth]
import itertools
found=False
for depth in range(1,5):
    g={}
    for a,bs in edges.items():
        if len(a)<depth: continue
        for b in bs:
            if len(b)<depth: continue
            if a[:depth-1]!=b[:depth-1]: 
                # different parents: compare at common depth
                pass
            A=a[:depth]; B=b[:depth]
            if A!=B and A[:-1]==B[:-1]:
                g.setdefault(A,set()).add((B,a,b))
    # find cycles (SCC)
    idx={};low={};st=[];on=set();res=[];c=[0]
    def sc(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for (w,_,_) in g.get(v,()):
            if w not in idx: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1: res.append(comp)
    for v in list(g): 
        if v not in idx: sc(v)
    for comp in res:
        found=True
        print("cycle at depth",depth,":", ' <-> '.join('::'.join(x) for x in comp))
        for x in comp:
            for (w,a,b) in g.get(x,()):
                if w in comp: print("   ", '::'.join(a),'->','::'.join(b))
if not found: print("no cycles among sibling modules in",root)
sys.exit(1 if found else 0)
