#!/usr/bin/env bash
# Test the example plugins as an outside author would: for each examples/plugins/*/ with a
# pyproject.toml, a fresh virtual environment gets kcore (a wheel built from this checkout)
# and the example (with its `test` extra, if it has one); then `kcore conformance --plugin
# <name>` runs for each of the example's kcore.plugins entry points, and the example's own
# tests run, inside that environment.
#
# Usage: scripts/test_examples.sh [EXAMPLE-DIR-NAME ...]   (default: every example)
# JUnit reports go to $KCORE_EXAMPLES_REPORTS when it is set. Exits non-zero when any step of
# any example fails; the temporary environments are removed in any case.
#
# Speed: every wheel is resolved and built once into a wheelhouse (pip's cache is reused), and
# the environments install from it alone (--no-index), through the host's pip (--python):
# most of the time goes into running the suites, not into pip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py=${PYTHON:-python3}
pip=("$py" -m pip --disable-pip-version-check -q)
work="$(mktemp -d -t kcore-examples.XXXXXX)"
cleanup() {
    # Unmount what a test left mounted below the work directory (deepest first), then remove it.
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo \
        | sort -r | while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
reports="${KCORE_EXAMPLES_REPORTS:-$work/reports}"
wheels="$work/wheels"
mkdir -p "$reports" "$wheels" "$work/pytest" "$work/src"
started=$SECONDS

step() { printf '== [%4d s] %s\n' "$((SECONDS - started))" "$*"; }

# What an example's pyproject.toml says: its kcore.plugins entry points, its `test` extra and
# its dependencies other than kcore (which comes from this checkout).
project() {
    "$py" - "$1" "$2" <<'EOF'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as fh:
    project = tomllib.load(fh)["project"]
what = sys.argv[2]
if what == "name":
    print(project["name"])
elif what == "plugins":
    print(" ".join(project.get("entry-points", {}).get("kcore.plugins", {})))
elif what == "extras":
    print("[test]" if "test" in project.get("optional-dependencies", {}) else "")
else:
    reqs = [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get("test", [])]
    for req in reqs:
        if re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower() != "kcore":
            print(req)
EOF
}

# kcore: a wheel of the working tree as it is (tracked and new files, no build/ leftovers),
# and the wheels of everything it needs.
step "building kcore and the wheelhouse"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mkdir -p "$work/src/kcore"
    (cd "$root" && git ls-files -z -co --exclude-standard --deduplicate \
        | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
        | xargs -0 tar -cf -) | tar -xf - -C "$work/src/kcore"
else
    cp -r "$root" "$work/src/kcore"
fi
"${pip[@]}" wheel --wheel-dir "$wheels" "$work/src/kcore" setuptools wheel

if [ $# -gt 0 ]; then
    examples=()
    for name in "$@"; do examples+=("$root/examples/plugins/$name/"); done
else
    examples=("$root"/examples/plugins/*/)
fi

failed=()
for dir in "${examples[@]}"; do
    [ -f "$dir/pyproject.toml" ] || continue
    name="$(basename "$dir")"
    t0=$SECONDS
    src="$work/src/$name"
    venv="$work/venv/$name"
    mkdir -p "$src"
    # A copy without the checkout's build leftovers: built and tested as an author's copy.
    (cd "$dir" && tar -cf - --exclude='*.egg-info' --exclude=build --exclude=__pycache__ .) \
        | tar -xf - -C "$src"
    step "$name: wheels, a fresh venv, kcore and the example"
    mapfile -t deps < <(project "$src/pyproject.toml" deps)
    if ! { "${pip[@]}" wheel --wheel-dir "$wheels" --find-links "$wheels" --no-deps "$src" &&
        { [ ${#deps[@]} -eq 0 ] || "${pip[@]}" wheel --wheel-dir "$wheels" --find-links "$wheels" "${deps[@]}"; } &&
        "$py" -m venv --without-pip "$venv" &&
        "${pip[@]}" --python "$venv/bin/python" install --no-index --find-links "$wheels" \
            --no-compile "$(project "$src/pyproject.toml" name)$(project "$src/pyproject.toml" extras)"; }; then
        failed+=("$name: install")
        continue
    fi
    plugins="$(project "$src/pyproject.toml" plugins)"
    [ -n "$plugins" ] || failed+=("$name: no entry point in group kcore.plugins")
    for plugin in $plugins; do
        step "$name: kcore conformance --plugin $plugin"
        (cd "$work" && PATH="$venv/bin:$PATH" "$venv/bin/kcore" --data-dir "$work/data/$name" conformance \
            --plugin "$plugin" --junitxml "$reports/$name-$plugin-conformance.xml") \
            || failed+=("$name: kcore conformance --plugin $plugin")
    done
    step "$name: its own tests"
    (cd "$src" && PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        --basetemp "$work/pytest/$name" --junitxml "$reports/$name-tests.xml") \
        || failed+=("$name: tests")
    step "$name: done in $((SECONDS - t0)) s"
done

step "examples tested in $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
