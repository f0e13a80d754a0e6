#!/usr/bin/env bash
# Fails if any file of the repository reads or links a path outside it: the project must build,
# test and be understood from a clone alone (docs/README.md). Checks every tracked or new,
# not-ignored file for:
#   - `../` paths that climb out of the repository, resolved from the file's directory, from its
#     crate (Rust reads files relative to CARGO_MANIFEST_DIR) and, for scripts, from the root;
#   - the repository root's parent (`REPO_ROOT.parent`, "$ROOT/..", repo_root().join("..") ...);
#   - absolute paths into home, project or temp directories (/work/, /home/, /tmp/, ...);
#   - markdown links and images whose target resolves outside the root, or is absolute;
#   - citations of documents that are not in the repository (API.md, DESIGN.md, STYLE.md: the
#     repository's own are docs/api.md and docs/design.md).
#
#   bash infra/check_standalone.sh              # self-test, then check this repository
#   bash infra/check_standalone.sh --self-test  # only prove the check fails on each kind of escape
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="infra/check_standalone.sh"

check() {
  python3 - "$1" "$SELF" <<'PY'
import os
import re
import subprocess
import sys

root = os.path.realpath(sys.argv[1])
own = sys.argv[2]

files = subprocess.run(
    ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    check=True, capture_output=True,
).stdout.decode().split("\0")

UP = r"(?:\.\./)+(?:\.\.(?![\w.])|[\w.\-/]*)"
# `../x` not inside a longer path (so `/v1/../admin` is a URL, not a file), or `"/../x` as in
# concat!(env!("CARGO_MANIFEST_DIR"), "/../x").
RELATIVE = re.compile(r"(?<![\w.\-/])(" + UP + r")|(?<=[\"'])/(" + UP + r")")
PARENT_OF_ROOT = re.compile(
    r"(ROOT|root|repo_root\(\))\s*\.parent\b|repo_root\(\)\.parent\(\)|repo_root\(\)\s*\.join\(\s*\"\.\.(/|\")"
    r"|\$\{?\w*ROOT\}?/\.\.(/|\b|$)|\.\./shared\b"
)
ABSOLUTE = re.compile(
    r"(?<![\w.\-/:~@])/(work|home|Users|root|tmp|mnt|srv|opt|media|private|var/tmp|var/folders)/[\w.\-]"
)
EXTERNAL_DOCS = re.compile(r"(?<![\w./-])(API|DESIGN|STYLE)\.md\b")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)|\b(?:src|href)=\"([^\"]+)\"")


def inside(path: str) -> bool:
    real = os.path.normpath(path)
    return real == root or real.startswith(root + os.sep)


def crate_dir(rel_dir: str) -> str | None:
    d = rel_dir
    while True:
        if os.path.exists(os.path.join(root, d, "Cargo.toml")):
            return os.path.join(root, d)
        if not d:
            return None
        d = os.path.dirname(d)


problems = []
for rel in files:
    if not rel or rel == own:
        continue
    path = os.path.join(root, rel)
    if not os.path.isfile(path):
        continue
    with open(path, "rb") as fh:
        data = fh.read()
    if b"\0" in data:
        continue
    text = data.decode("utf-8", errors="replace")
    rel_dir = os.path.dirname(rel)
    bases = [os.path.join(root, rel_dir)]
    if rel.endswith((".rs", ".toml")):
        crate = crate_dir(rel_dir)
        if crate:
            bases.append(crate)
    if rel.endswith((".sh", ".py")) or "/" not in rel:
        bases.append(root)
    is_md = rel.endswith(".md")
    for n, line in enumerate(text.splitlines(), 1):
        def report(why: str) -> None:
            entry = f"{rel}:{n}: {why}: {line.strip()[:160]}"
            if entry not in problems:
                problems.append(entry)

        for m in RELATIVE.finditer(line):
            target = m.group(1) or m.group(2)
            for base in bases:
                if not inside(os.path.join(base, target)):
                    report(f"`{target}` climbs out of the repository (from {os.path.relpath(base, root)}/)")
                    break
        if PARENT_OF_ROOT.search(line):
            report("reaches the repository root's parent")
        if ABSOLUTE.search(line):
            report("absolute path outside the repository")
        if EXTERNAL_DOCS.search(line):
            report("cites a document that is not in the repository (use docs/api.md or docs/design.md)")
        if is_md:
            for m in MD_LINK.finditer(line):
                target = next(g for g in m.groups() if g)
                if re.match(r"^([a-z][a-z0-9+.-]*:|#|mailto:)", target, re.I):
                    continue
                target = target.split("#", 1)[0].split("?", 1)[0]
                if not target:
                    continue
                if target.startswith("/") or not inside(os.path.join(root, rel_dir, target)):
                    report(f"markdown link `{target}` points outside the repository")

for p in problems:
    print(p)
if problems:
    print(f"check_standalone: {len(problems)} reference(s) to paths outside {root}", file=sys.stderr)
    sys.exit(1)
print(f"check_standalone: {len([f for f in files if f])} files, nothing outside the repository")
PY
}

self_test() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/infra" "$tmp/docs" "$tmp/crate/src" "$tmp/crate/tests"
  git -C "$tmp" init -q
  cp "$ROOT/$SELF" "$tmp/infra/"
  printf '[package]\nname = "c"\n' >"$tmp/crate/Cargo.toml"
  # Each of these must be refused.
  printf 'let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/x.json");\n' >"$tmp/crate/src/up.rs"
  printf 'let d = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../elsewhere");\n' >"$tmp/crate/src/concat.rs"
  printf 'let p = repo_root().join("../fixtures.json");\n' >"$tmp/crate/src/root_parent.rs"
  printf 'FIXTURES = REPO_ROOT.parent / "data.json"\n' >"$tmp/infra/parent.py"
  printf 'cat "$ROOT/../notes.txt"\n' >"$tmp/infra/dollar_root.sh"
  printf 'source ../env.sh\n' >"$tmp/infra/relative.sh"
  printf 'const F: &str = "/work/shared/stripe/fixtures3.json";\n' >"$tmp/crate/src/absolute.rs"
  printf 'open("/home/me/x")\n' >"$tmp/infra/home.py"
  printf 'See [the contract](../../API.md).\n' >"$tmp/docs/escape.md"
  printf 'See ![chart](/tmp/chart.png).\n' >"$tmp/docs/absolute_link.md"
  printf '[ref]: ../../outside.md\n' >"$tmp/docs/reference_link.md"
  printf '/// The card of API.md.\n' >"$tmp/crate/src/cites.rs"
  # Each of these must pass.
  printf 'let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/a.json");\n' >"$tmp/crate/tests/ok.rs"
  printf 'See [api](api.md), [readme](../README.md), [web](https://example.com/../x), [top](#top).\n' >"$tmp/docs/ok.md"
  printf 'curl http://127.0.0.1/v1/../admin >/dev/null; cd "$ROOT"; #!/usr/bin/env bash\n' >"$tmp/infra/ok.sh"
  printf 'docs/api.md and docs/design.md, with /v1/stripe/customers\n' >"$tmp/README.md"

  local out
  if out="$(check "$tmp" 2>&1)"; then
    echo "check_standalone self-test: the check passed a repository that escapes it" >&2
    exit 1
  fi
  local expected=(crate/src/up.rs crate/src/concat.rs crate/src/root_parent.rs infra/parent.py
    infra/dollar_root.sh infra/relative.sh crate/src/absolute.rs infra/home.py docs/escape.md
    docs/absolute_link.md docs/reference_link.md crate/src/cites.rs)
  local f fail=0
  for f in "${expected[@]}"; do
    grep -q "^$f:" <<<"$out" || { echo "check_standalone self-test: $f was not refused" >&2; fail=1; }
  done
  for f in crate/tests/ok.rs docs/ok.md infra/ok.sh README.md; do
    if grep -q "^$f:" <<<"$out"; then
      echo "check_standalone self-test: $f was refused but is fine:" >&2
      grep "^$f:" <<<"$out" >&2
      fail=1
    fi
  done
  [ "$fail" = 0 ] || exit 1
  echo "check_standalone self-test: ${#expected[@]} escapes refused, 4 clean files passed"
}

case "${1:-}" in
  --self-test) self_test ;;
  "") self_test && check "$ROOT" ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac
