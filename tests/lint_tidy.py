#!/usr/bin/env python3
"""Helpers for tests/lint.sh (clang-tidy part).

  lint_tidy.py db ROOT COMPILE_COMMANDS OUT_DB ONLY_LIST JOBS USE_CACHE VERSION
      Writes the filtered compile database OUT_DB and prints the files to lint, one
      'path key' line each (path repo-relative). Kept: .cpp files under kernel/core,
      kernel/image, hostsim, tests/demo and the in-kernel tests and benchmarks
      (tests/kernel, tests/bench/kernel); a file compiled twice (hosted and kernel) is
      linted once, with the kernel's freestanding flags; GCC-only flags clang rejects are
      dropped. key (empty: do not cache) is a sha256 of the file's preprocessed text with
      comments (so NOLINT edits count), its flags, .clang-tidy and the clang-tidy version.

  lint_tidy.py findings ROOT BUILD_DIR < clang-tidy output
      Prints one 'path:line:col: check: message' line per distinct diagnostic (notes
      dropped, paths repo-relative, a header's finding seen from several files once).
"""
import concurrent.futures
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys

LINTED = ('kernel/core/', 'kernel/image/', 'hostsim/', 'tests/demo/', 'tests/kernel/', 'tests/bench/kernel/')
GCC_ONLY = {'-fno-tree-reassoc'}  # GCC flags clang rejects as unknown arguments
DROP = {'-fdiagnostics-color=always'}


def cmd_db(root, src, dst, only_path, jobs, use_cache, version):
    only = {line.strip() for line in open(only_path) if line.strip()}
    chosen = {}  # path -> (is_kernel, db entry, original arguments)
    for e in json.load(open(src)):
        path = os.path.relpath(os.path.normpath(os.path.join(e['directory'], e['file'])), root)
        if not path.endswith('.cpp') or not path.startswith(LINTED) or (only and path not in only):
            continue
        args = e['arguments'] if 'arguments' in e else shlex.split(e['command'])
        kernel = '-ffreestanding' in args
        if path in chosen and (chosen[path][0] or not kernel):
            continue  # keep the freestanding (kernel) command
        entry = {'directory': e['directory'], 'file': os.path.join(root, path),
                 'arguments': [a for a in args if a not in GCC_ONLY and a not in DROP]}
        chosen[path] = (kernel, entry, args)
    json.dump([c[1] for c in chosen.values()], open(dst, 'w'), indent=1)

    config = open(os.path.join(root, '.clang-tidy'), 'rb').read()

    def key(path):
        _, entry, args = chosen[path]
        cmd, skip = [], False
        for a in args:  # the build's own compiler, preprocessing only
            if skip:
                skip = False
            elif a in ('-o', '-MQ', '-MF', '-MT'):
                skip = True
            elif a not in ('-c', '-MD', '-MMD'):
                cmd.append(a)
        try:
            pre = subprocess.run(cmd + ['-E', '-C', '-o', '-'], cwd=entry['directory'],
                                 capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return ''
        if pre.returncode != 0 or not pre.stdout:
            return ''
        h = hashlib.sha256(pre.stdout)
        h.update(json.dumps(entry['arguments']).encode() + config + version.encode())
        return h.hexdigest()

    paths = sorted(chosen)
    keys = [''] * len(paths)
    if use_cache == '1':
        with concurrent.futures.ThreadPoolExecutor(max(1, int(jobs))) as ex:
            keys = list(ex.map(key, paths))
    for p, k in zip(paths, keys):
        print(p, k)


def cmd_findings(root, build):
    pat = re.compile(r'^(?:(\S.*?):(\d+):(\d+): )?(warning|error): (.*?)(?: \[([^\]]+)\])?$')
    seen = []
    for line in sys.stdin:
        m = pat.match(line.rstrip('\n'))
        if not m:
            continue
        path, ln, col, _, msg, checks = m.groups()
        check = (checks or 'clang-diagnostic-error').split(',')[0]
        where = '-'
        if path:
            p = os.path.normpath(os.path.join(build, path))  # relative paths are from the build dir
            if p.startswith(root + '/'):
                p = os.path.relpath(p, root)
            where = f'{p}:{ln}:{col}'
        out = f'{where}: {check}: {msg}'
        if out not in seen:
            seen.append(out)
    for out in seen:
        print(out)


if __name__ == '__main__':
    if len(sys.argv) == 9 and sys.argv[1] == 'db':
        cmd_db(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == 'findings':
        cmd_findings(os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]))
    else:
        sys.exit(__doc__)
