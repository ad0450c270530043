#!/usr/bin/env bash
# Builds the release artifacts into dist/ (gitignored), for x86_64 Linux (glibc):
#   inloop-VERSION-cp310-abi3-manylinux_*_x86_64.whl  one wheel for every CPython >= 3.10 (abi3),
#                                                     checked manylinux-compliant by auditwheel
#   inloop-VERSION.tar.gz                             the sdist (checked: a wheel builds from it)
#   inloop                                            the standalone binary (the CLI and server)
#   inloop-VERSION.tgz                                the npm package (loader, no addon inside)
#   inloop-linux-x64-gnu-VERSION.tgz                  its platform package (the prebuilt addon),
#                                                     an optionalDependency of inloop
#   SHA256SUMS
# Users install them without Rust: see the README's "Install" section.
#
# usage: scripts/release.sh [--fast | --dev] [--out DIR]
#   --fast   Cargo profile release-fast (no LTO, 16 codegen units, incremental) instead of the
#            default dist (release + fat LTO, one codegen unit).
#   --dev    Cargo's dev profile (unoptimised): the same artifacts and layout from the build
#            the tests already made, so scripts/test.sh checks packaging in about a minute.
#   --out    where to put the artifacts (default dist/; emptied first).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

PROFILE=dist
OUT="$ROOT/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) PROFILE=release-fast ;;
    --dev) PROFILE=dev ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$(realpath -m "$2"); shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (usage: scripts/release.sh [--fast | --dev] [--out DIR])" ;;
  esac
  shift
done

TRIPLE=x86_64-unknown-linux-gnu
NAPI_PLATFORM=linux-x64-gnu
[ "$CARGO_BUILD_TARGET" = "$TRIPLE" ] \
  || die "release.sh builds the $TRIPLE artifacts; this build targets $CARGO_BUILD_TARGET"
command -v node >/dev/null || die "node (20 or newer) is required to build the npm packages"

# One version everywhere: the workspace's, the Python project's and the npm packages'.
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$VERSION" ] || die "no version in Cargo.toml's [workspace.package]"
for f in python/pyproject.toml typescript/package.json typescript/npm/$NAPI_PLATFORM/package.json; do
  grep -q "\"$VERSION\"" "$f" || die "$f does not say version $VERSION (Cargo.toml's): bump them together"
done

# Cargo puts the dev profile's output in debug/, every other profile's under its name.
BUILD="$CARGO_TARGET_DIR/$TRIPLE/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
# napi looks for the artifact under the profile's name: for dev, let it default (debug/).
NAPI_PROFILE=(--profile "$PROFILE")
[ "$PROFILE" = dev ] && NAPI_PROFILE=()
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"
started=$SECONDS

say "release $VERSION, profile $PROFILE, into $OUT"

say "the standalone binary (cargo build --profile $PROFILE -p inloop-core --bin inloop)"
cargo build --quiet --profile "$PROFILE" -p inloop-core --bin inloop
cp "$BUILD/inloop" "$OUT/inloop"
"$OUT/inloop" --help >/dev/null || die "the built binary does not run"

# abi3 only here: the dev build (maturin develop) stays version-specific. maturin audits the
# glibc symbol versions itself and tags the lowest manylinux tag they allow.
say "the abi3 wheel (maturin build --features pyo3/abi3-py310)"
(cd python && maturin build --quiet --profile "$PROFILE" --features pyo3/abi3-py310 \
  --strip -o "$OUT") >"$STAGE/maturin.log" 2>&1 \
  || { cat "$STAGE/maturin.log" >&2; die "maturin build failed"; }
shopt -s nullglob
wheels=("$OUT"/inloop-"$VERSION"-cp310-abi3-manylinux_*_x86_64*.whl)
shopt -u nullglob
[ ${#wheels[@]} = 1 ] || { cat "$STAGE/maturin.log" >&2; ls "$OUT" >&2; die "expected one cp310-abi3 manylinux wheel"; }
WHEEL=${wheels[0]}
say "auditwheel show $(basename "$WHEEL")"
auditwheel show "$WHEEL" >"$STAGE/audit.txt" 2>&1 || { cat "$STAGE/audit.txt" >&2; die "auditwheel show failed"; }
# auditwheel wraps its report: join the lines before reading the tag it found.
audit=$(tr -s '\n ' ' ' <"$STAGE/audit.txt")
tag=$(grep -o 'consistent with the following platform tag: "[^"]*"' <<<"$audit" | sed 's/.*: "\(.*\)"/\1/')
case "$tag" in
  manylinux_*_x86_64|manylinux2014_x86_64) ;;
  *) cat "$STAGE/audit.txt" >&2; die "auditwheel does not find the wheel manylinux-compliant (tag: '${tag:-none}')" ;;
esac
case "$(basename "$WHEEL")" in
  *"$tag"*) ;;
  *) cat "$STAGE/audit.txt" >&2; die "the wheel's tag is not the one auditwheel found ($tag)" ;;
esac
echo "    auditwheel: consistent with $tag"

say "the sdist (maturin sdist), and a wheel built from it"
(cd python && maturin sdist -o "$OUT") >"$STAGE/sdist.log" 2>&1 \
  || { cat "$STAGE/sdist.log" >&2; die "maturin sdist failed"; }
SDIST="$OUT/inloop-$VERSION.tar.gz"
[ -f "$SDIST" ] || { cat "$STAGE/sdist.log" >&2; die "no $SDIST"; }
if [ "$PROFILE" = dev ]; then
  # The test command's run: building the whole tree again from the unpacked sdist costs minutes
  # and proves nothing the packaging test needs; a real release (no --dev) does it.
  echo "    --dev: no wheel built from the sdist (scripts/release.sh without --dev checks that)"
else
# Built in a fixed directory (files rewritten only when they changed), so that a second run
# rebuilds incrementally; the wheel it makes is checked and thrown away.
SDIST_DIR="$CARGO_TARGET_DIR/inloop-sdist-check"
python - "$SDIST" "$SDIST_DIR" <<'EOF'
import os, sys, tarfile
sdist, dest = sys.argv[1], sys.argv[2]
seen = set()
with tarfile.open(sdist) as tar:
    for m in tar.getmembers():
        if not m.isfile():
            continue
        path = os.path.join(dest, m.name)
        seen.add(os.path.normpath(path))
        data = tar.extractfile(m).read()
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    continue
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
for root, _, files in os.walk(dest):
    if "/target" in root:
        continue
    for name in files:
        path = os.path.normpath(os.path.join(root, name))
        if path not in seen:
            os.remove(path)
EOF
(cd "$SDIST_DIR/inloop-$VERSION" && maturin build --quiet --profile "$PROFILE" \
  --features pyo3/abi3-py310 -o "$STAGE/from-sdist") >"$STAGE/sdist-build.log" 2>&1 \
  || { cat "$STAGE/sdist-build.log" >&2; die "a wheel does not build from the sdist $SDIST"; }
python -m zipfile -l "$STAGE"/from-sdist/*.whl | grep 'inloop/_native\.abi3\.so' >/dev/null \
  || die "the wheel built from the sdist has no inloop/_native.abi3.so"
echo "    a wheel builds from $(basename "$SDIST")"
fi

say "the npm packages (napi build --profile $PROFILE, tsc, npm pack)"
[ -x typescript/node_modules/.bin/napi ] \
  || (cd typescript && npm ci --no-audit --no-fund --loglevel=error)
MAIN="$STAGE/npm/inloop"
PLATFORM="$STAGE/npm/inloop-$NAPI_PLATFORM"
mkdir -p "$MAIN/native" "$PLATFORM"
(cd typescript && npx napi build --manifest-path ../bindings-node/Cargo.toml --platform \
  "${NAPI_PROFILE[@]}" --strip --output-dir "$STAGE/napi" --js index.cjs --dts index.d.ts \
  --target "$TRIPLE") >"$STAGE/napi.log" 2>&1 \
  || { cat "$STAGE/napi.log" >&2; die "napi build failed"; }
cmp -s "$STAGE/napi/index.d.ts" typescript/native/index.d.ts \
  || die "typescript/native/index.d.ts drifted from the Rust addon: commit the regenerated file"
(cd typescript && npx tsc -p tsconfig.json) || die "tsc failed"
# The main package: the compiled SDK and the generated loader, no addon (napi-rs layout).
cp typescript/README.md "$MAIN/"
mkdir -p "$MAIN/dist"
cp -r typescript/dist/src "$MAIN/dist/src"
cp "$STAGE/napi/index.cjs" "$STAGE/napi/index.d.ts" "$MAIN/native/"
node - typescript/package.json "$MAIN/package.json" "inloop-$NAPI_PLATFORM" "$VERSION" <<'EOF'
const fs = require("node:fs");
const [src, dest, platformPackage, version] = process.argv.slice(2);
const pkg = JSON.parse(fs.readFileSync(src, "utf8"));
delete pkg.scripts;
delete pkg.devDependencies;
pkg.optionalDependencies = { [platformPackage]: version };
fs.writeFileSync(dest, JSON.stringify(pkg, null, 2) + "\n");
EOF
# The platform package: its package.json (typescript/npm/) and the addon.
cp typescript/npm/$NAPI_PLATFORM/package.json typescript/npm/$NAPI_PLATFORM/README.md "$PLATFORM/"
cp "$STAGE/napi/inloop.$NAPI_PLATFORM.node" "$PLATFORM/"
(cd "$MAIN" && npm pack --silent --pack-destination "$OUT" >/dev/null) || die "npm pack inloop failed"
(cd "$PLATFORM" && npm pack --silent --pack-destination "$OUT" >/dev/null) \
  || die "npm pack inloop-$NAPI_PLATFORM failed"
[ -f "$OUT/inloop-$VERSION.tgz" ] && [ -f "$OUT/inloop-$NAPI_PLATFORM-$VERSION.tgz" ] \
  || { ls "$OUT" >&2; die "npm pack did not write the two tarballs"; }
tar -tzf "$OUT/inloop-$VERSION.tgz" | grep '\.node$' >/dev/null && die "the main npm package must not hold the addon"
tar -tzf "$OUT/inloop-$NAPI_PLATFORM-$VERSION.tgz" | grep -x "package/inloop.$NAPI_PLATFORM.node" >/dev/null \
  || die "the platform package has no inloop.$NAPI_PLATFORM.node"

(cd "$OUT" && sha256sum -- * > SHA256SUMS)
glibc=$(objdump -T "$OUT/inloop" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
say "done in $((SECONDS - started)) s; the binary needs glibc ${glibc#GLIBC_} or newer"
(cd "$OUT" && ls -l --block-size=K -- * | awk '{print "    " $5 "\t" $9}')
