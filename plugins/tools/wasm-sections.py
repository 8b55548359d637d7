#!/usr/bin/env python3
"""List the custom sections of WebAssembly components and core modules, recursively.

    python3 plugins/tools/wasm-sections.py FILE.wasm...             # list every custom section
    python3 plugins/tools/wasm-sections.py --manifest FILE.wasm...  # print each octo:manifest

With --manifest, exits non-zero unless every file has exactly one `octo:manifest` section (top
level, or else inside exactly one embedded core module) holding valid JSON; --expect-none inverts
that check (for components that must not carry one). No dependencies beyond the standard library.
"""
import json
import sys

MANIFEST = "octo:manifest"


def leb(data, pos):
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def walk(data, path, out):
    """Append (path, name, payload) for every custom section in `data` and its nested modules."""
    if data[:4] != b"\0asm":
        raise ValueError(f"{path}: not a wasm binary")
    is_component = data[6:8] == b"\x01\x00"  # layer 1 = component, 0 = core module
    pos, index = 8, 0
    while pos < len(data):
        section_id = data[pos]
        size, body = leb(data, pos + 1)
        end = body + size
        if section_id == 0:
            name_len, p = leb(data, body)
            name = data[p : p + name_len].decode("utf-8", "replace")
            out.append((path, name, data[p + name_len : end]))
        elif is_component and section_id == 1:  # core module
            walk(data[body:end], f"{path}/core-module[{index}]", out)
            index += 1
        elif is_component and section_id == 4:  # nested component
            walk(data[body:end], f"{path}/component[{index}]", out)
            index += 1
        pos = end
    return out


def find_manifest(sections):
    """The manifest payload the way the host looks for it, or an error string."""
    top = [s for s in sections if s[1] == MANIFEST and s[0] == "component"]
    nested = [s for s in sections if s[1] == MANIFEST and s[0] != "component"]
    if len(top) == 1:
        return top[0]
    if top:
        return f"{len(top)} top-level {MANIFEST} sections"
    if len(nested) == 1:
        return nested[0]
    return f"{len(nested)} {MANIFEST} sections in core modules"


def main(argv):
    manifest_mode = "--manifest" in argv
    expect_none = "--expect-none" in argv
    files = [a for a in argv if not a.startswith("--")]
    failed = False
    for f in files:
        sections = walk(open(f, "rb").read(), "component", [])
        if not manifest_mode:
            for path, name, payload in sections:
                print(f"{f}: {path}: {name} ({len(payload)} bytes)")
            continue
        found = find_manifest(sections)
        if expect_none:
            if isinstance(found, str) and found.startswith("0 "):
                print(f"{f}: no {MANIFEST} section, as expected")
            else:
                print(f"{f}: UNEXPECTED {MANIFEST} section")
                failed = True
            continue
        if isinstance(found, str):
            print(f"{f}: ERROR: {found}")
            failed = True
            continue
        path, _, payload = found
        try:
            manifest = json.loads(payload)
        except ValueError as e:
            print(f"{f}: ERROR: {MANIFEST} at {path} is not JSON: {e}")
            failed = True
            continue
        print(f"{f}: {path}: {json.dumps(manifest, separators=(',', ':'))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
