#!/usr/bin/python3
"""Whether two outputs of one job are the same bytes apart from what their runs record of
themselves: every output carries a provenance record (core/stack/provenance.h) whose time, executor
and input name belong to the run, so two runs of one job (local and on a cluster, a path job and a
streamed one) are never byte-equal files. This compares everything else byte for byte:

- TIFF: the header, every page's every tag (strile offsets aside: where the bytes are), every
  strile's raw bytes, and the description with the record taken out; then the two records, which
  may differ only in the fields allowed (--differ).
- A folder (OME-Zarr store, plane folder): the same file names, every file's bytes, the group's
  attributes (.zattrs, or zarr.json's) and stackproc.json as JSON with the record taken out;
  then the records as above.

Both outputs must hold a record. usage: same_output.py A B [--differ time,executor,input.name]
Exit 0 when the same, 1 (saying where they differ) otherwise."""
import argparse
import json
import os
import re
import sys

import tifffile

OFFSETS = {273, 324}  # StripOffsets, TileOffsets
DESCRIPTION = 270
IJ_METADATA = 50839
OME_RECORD = re.compile(r'<MapAnnotation\s[^>]*Namespace="stackproc"[^>]*>[\s\S]*?</MapAnnotation>')
OME_FIELD = re.compile(r'<M\s+K="([^"]*)"\s*>([^<]*)</M>')


def tag_value(fh, tag):
    """A tag's value as tifffile reads it, but a value it decodes into a structure (ImageJ's
    IJMetadata: a dict of arrays) as the bytes it holds."""
    if tag.code != IJ_METADATA:
        return tag.value
    fh.seek(tag.valueoffset)
    return fh.read(tag.valuebytecount)


def unescape(text):
    for a, b in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        text = text.replace(a, b)
    return text


def split_description(text):
    """(the description without its record, the record as a dict or None)."""
    m = OME_RECORD.search(text)
    if m:
        record = {}
        for key, value in OME_FIELD.findall(m.group(0)):
            value = unescape(value)
            record[key] = json.loads(value) if key in ("pipeline", "input", "pyramid") else value
        rest = text[:m.start()] + text[m.end():]
        return re.sub(r"<StructuredAnnotations\s*>\s*</StructuredAnnotations>", "", rest), record
    if text.lstrip().startswith("{"):
        obj = json.loads(text)
        record = obj.pop("stackproc", None)
        return json.dumps(obj, sort_keys=True), record
    lines = text.split("\n")
    kept = [l for l in lines if not l.startswith("stackproc=")]
    records = [json.loads(l[len("stackproc="):]) for l in lines if l.startswith("stackproc=")]
    return "\n".join(kept), records[0] if records else None


def flat(record, prefix=""):
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def compare_records(a, b, allowed, where):
    if a is None or b is None:
        return [f"{where}: no provenance record in {'the first' if a is None else 'the second'}"]
    fa, fb = flat(a), flat(b)
    return [f"{where}: provenance {key}: {fa.get(key)!r} != {fb.get(key)!r}"
            for key in sorted(set(fa) | set(fb))
            if fa.get(key) != fb.get(key) and not any(key == d or key.startswith(d + ".")
                                                      for d in allowed)]


def strile_bytes(fh, page):
    out = []
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        fh.seek(offset)
        out.append(fh.read(count))
    return out


def compare_tiffs(a, b, allowed):
    problems = []
    with tifffile.TiffFile(a) as ta, tifffile.TiffFile(b) as tb:
        if (ta.byteorder, ta.is_bigtiff, len(ta.pages)) != (tb.byteorder, tb.is_bigtiff,
                                                            len(tb.pages)):
            return [f"byte order, BigTIFF or page count: {ta.byteorder} {ta.is_bigtiff} "
                    f"{len(ta.pages)} != {tb.byteorder} {tb.is_bigtiff} {len(tb.pages)}"]
        records = (None, None)
        for i, (pa, pb) in enumerate(zip(ta.pages, tb.pages)):
            tags_a = {t.code: tag_value(ta.filehandle, t) for t in pa.tags.values()
                      if t.code not in OFFSETS}
            tags_b = {t.code: tag_value(tb.filehandle, t) for t in pb.tags.values()
                      if t.code not in OFFSETS}
            if DESCRIPTION in tags_a or DESCRIPTION in tags_b:
                da, ra = split_description(tags_a.pop(DESCRIPTION, ""))
                db, rb = split_description(tags_b.pop(DESCRIPTION, ""))
                if da != db:
                    problems.append(f"page {i}: descriptions differ:\n  {da!r}\n  {db!r}")
                if i == 0:
                    records = (ra, rb)
            for code in sorted(set(tags_a) | set(tags_b)):
                va, vb = tags_a.get(code), tags_b.get(code)
                same = (va == vb).all() if hasattr(va == vb, "all") else va == vb
                if not same:
                    problems.append(f"page {i}: tag {code}: {va!r} != {vb!r}")
            if strile_bytes(ta.filehandle, pa) != strile_bytes(tb.filehandle, pb):
                decoded = (pa.asarray() == pb.asarray()).all()
                problems.append(f"page {i}: encoded bytes differ (decoded pixels "
                                f"{'equal: the encoder' if decoded else 'differ too'})")
            if len(problems) > 10:
                break
        problems += compare_records(*records, allowed, "page 0")
    return problems


def compare_folders(a, b, allowed):
    names_a = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    names_b = sorted(os.path.relpath(os.path.join(d, f), b) for d, _, fs in os.walk(b) for f in fs)
    if names_a != names_b:
        return [f"files differ: {sorted(set(names_a) ^ set(names_b))[:10]}"]
    problems = []
    for name in names_a:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            ba, bb = fa.read(), fb.read()
        base = os.path.basename(name)
        # The group's attributes hold the record: .zattrs (Zarr v2) or zarr.json's (v3).
        group = name in (".zattrs", "zarr.json")
        if base == "stackproc.json" or group:
            ja, jb = json.loads(ba), json.loads(bb)
            aa, ab = (ja.get("attributes", {}), jb.get("attributes", {})) \
                if name == "zarr.json" else (ja, jb)
            ra, rb = (ja, jb) if base == "stackproc.json" else (aa.pop("stackproc", None),
                                                                 ab.pop("stackproc", None))
            if group and ja != jb:
                problems.append(f"{name}: attributes differ")
            if base == "stackproc.json" or group:
                problems += compare_records(ra, rb, allowed, name)
        elif ba != bb:
            problems.append(f"{name}: bytes differ")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--differ", default="time,executor,input.name")
    args = parser.parse_args()
    allowed = [d for d in args.differ.split(",") if d]
    compare = compare_folders if os.path.isdir(args.a) else compare_tiffs
    problems = compare(args.a, args.b, allowed)
    for p in problems:
        print(f"same_output: {args.a} vs {args.b}: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
