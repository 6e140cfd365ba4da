#!/usr/bin/env bash
# Replay the seed notebook (tests/data/autograd_notebook.txt) against gradserve's HTTP API
# with curl, printing each cell and what it shows, as examples/seed_engine.py does in process.
#
#   bash examples/curl_seed.sh http://127.0.0.1:8000
#
# Each cell is one batch (POST /v1/sessions/{id}/batch); the reprs its `get` commands read
# are what the cell shows. f(a)'s loop runs here, reading the condition's value each time.
# Needs curl and python3 (the standard library only, to read JSON). Set GRADSERVE_API_KEY
# when the server has an API key.
set -euo pipefail

BASE_URL=${1:?usage: curl_seed.sh BASE_URL}
BASE_URL=${BASE_URL%/}

# POST a JSON body; print the response body, or the problem and fail on an error status.
post() {
  local path=$1 body=$2 out status
  shift 2
  out=$(curl -sS -X POST "$BASE_URL$path" -H 'Content-Type: application/json' "$@" \
    --data-binary "$body" -w '\n%{http_code}')
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  if [[ $status != 2?? ]]; then
    printf 'POST %s: HTTP %s\n%s\n' "$path" "$status" "$out" >&2
    return 1
  fi
  printf '%s' "$out"
}

# Read a JSON document on stdin with a Python expression over `doc`.
json() {
  python3 -c 'import json, sys; doc = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# What a batch's response shows: the reprs its gets read, one value or a tuple of them
# (on one line when it fits in 79 columns, else one item a line: IPython's display).
SHOW='
import json, sys
reprs = [t["repr"] for r in json.load(sys.stdin)["results"] if r["kind"] == "get"
         for t in r["tensors"] if t and "repr" in t]
if len(reprs) > 1:
    flat = "(" + ", ".join(reprs) + ")"
    if len(flat) > 79 or "\n" in flat:
        flat = "(" + ",\n ".join(r.replace("\n", "\n ") for r in reprs) + ")"
    reprs = [flat]
if reprs:
    print(reprs[0] + "\n")
'

key_header=()
[[ -n ${GRADSERVE_API_KEY:-} ]] && key_header=(-H "X-API-Key: $GRADSERVE_API_KEY")
session=$(post /v1/sessions '{"seed": 0}' "${key_header[@]}")
SESSION_ID=$(json 'doc["id"]' <<<"$session")
AUTH="Authorization: Bearer $(json 'doc["token"]' <<<"$session")"
trap 'curl -sS -o /dev/null -X DELETE "$BASE_URL/v1/sessions/$SESSION_ID" -H "$AUTH" || true' EXIT

# batch COMMAND...: run the commands (JSON objects) as one batch; print the response.
batch() {
  local IFS=,
  post "/v1/sessions/$SESSION_ID/batch" "{\"commands\": [$*]}" -H "$AUTH"
}

# cell LABEL CODE COMMAND...: print the cell, run its batch, print what it shows.
cell() {
  local label=$1 code=$2
  shift 2
  printf '%s:\n%s\n\n' "$label" "$code"
  if (($#)); then
    batch "$@" | python3 -c "$SHOW"
  fi
}

op() {  # op NAME OP INPUT...: bind NAME to OP applied to the inputs (JSON values)
  local name=$1 op=$2 IFS=,
  shift 2
  printf '{"kind": "op", "op": "%s", "inputs": [%s], "name": "%s"}' "$op" "$*" "$name"
}
show() { printf '{"kind": "get", "tensor": %s, "repr": true}' "$1"; }
value() { printf '{"kind": "get", "tensor": %s, "value": true}' "$1"; }
GRAD_X='{"grad_of": "x"}'
ZERO_GRAD_X='{"kind": "op", "op": "zero_", "inputs": [{"grad_of": "x"}]}'

cell 'In [1]' 'import torch'

cell 'In [2]' 'x = torch.arange(4.0)
x' \
  '{"kind": "create", "name": "x", "factory": "arange", "args": [4.0]}' "$(show '"x"')"

# x.grad is None: the cell shows nothing.
cell 'In [3]' '# Can also create x = torch.arange(4.0, requires_grad=True)
x.requires_grad_(True)
x.grad  # The gradient is None by default' \
  '{"kind": "requires_grad", "tensor": "x", "requires_grad": true}'

cell 'In [5]' 'torch.dot(x, x)' "$(op out dot '"x"' '"x"')" "$(show '"out"')"

cell 'In [4]' 'y = 2 * torch.dot(x, x)
y' \
  "$(op xx dot '"x"' '"x"')" "$(op y mul 2 '"xx"')" "$(show '"y"')"

cell 'In [6]' 'y.backward()
x.grad' \
  '{"kind": "backward", "tensor": "y"}' "$(show "$GRAD_X")"

cell 'In [8]' 'x.grad, 4 * x' "$(op out mul 4 '"x"')" "$(show "$GRAD_X")" "$(show '"out"')"

cell 'In [9]' 'x.grad == 4 * x' \
  "$(op x4 mul 4 '"x"')" "$(op out eq "$GRAD_X" '"x4"')" "$(show '"out"')"

cell 'In [10]' 'x.sum()' "$(op out sum '"x"')" "$(show '"out"')"

cell 'In [11]' 'x.grad.zero_()  # Reset the gradient
y = x.sum()
y.backward()
x.grad' \
  "$ZERO_GRAD_X" "$(op y sum '"x"')" '{"kind": "backward", "tensor": "y"}' "$(show "$GRAD_X")"

cell 'In [18]' 'x, x * x' "$(op out mul '"x"' '"x"')" "$(show '"x"')" "$(show '"out"')"

# len(y) comes from the shape the server reports for y.
length=$(batch "$ZERO_GRAD_X" "$(op y mul '"x"' '"x"')" | json 'doc["results"][1]["tensors"][0]["shape"][0]')
ONES="{\"kind\": \"create\", \"name\": \"ones\", \"factory\": \"ones\", \"args\": [$length]}"
cell 'In [20]' 'x.grad.zero_()
y = x * x
y.backward(gradient=torch.ones(len(y)))  # Faster: y.sum().backward()
x.grad' \
  "$ONES" '{"kind": "backward", "tensor": "y", "gradient": "ones"}' "$(show "$GRAD_X")"

cell 'In [22]' 'y.sum(), torch.ones(len(y))' \
  "$(op out sum '"y"')" "$ONES" "$(show '"out"')" "$(show '"ones"')"

cell 'In [64]' 'x.grad.zero_()
y = x * x
u = y.detach()
z = u * x

z.sum().backward()
x.grad == u' \
  "$ZERO_GRAD_X" "$(op y mul '"x"' '"x"')" '{"kind": "detach", "tensor": "y", "name": "u"}' \
  "$(op z mul '"u"' '"x"')" "$(op zs sum '"z"')" '{"kind": "backward", "tensor": "zs"}' \
  "$(op out eq "$GRAD_X" '"u"')" "$(show '"out"')"

cell 'In [66]' 'y, z, u, x.grad' "$(show '"y"')" "$(show '"z"')" "$(show '"u"')" "$(show "$GRAD_X")"

cell 'In [67]' 'x.grad.zero_()
y.sum().backward()
x.grad == 2 * x' \
  "$ZERO_GRAD_X" "$(op ys sum '"y"')" '{"kind": "backward", "tensor": "ys"}' \
  "$(op x2 mul 2 '"x"')" "$(op out eq "$GRAD_X" '"x2"')" "$(show '"out"')"

cell 'In [68]' 'def f(a):
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c'

# f(a) on the client: each loop test reads the condition's value from the server.
f() {
  local a=$1 i
  batch "$(op b mul "\"$a\"" 2)" >/dev/null
  for ((i = 0; ; i++)); do
    ((i < 64)) || { echo "f(a) did not leave its loop" >&2; return 1; }
    [[ $(batch "$(op nb norm '"b"')" "$(op cond lt '"nb"' 1000)" "$(value '"cond"')" |
      json 'doc["results"][2]["tensors"][0]["value"]["data"][0]') == True ]] || break
    batch "$(op b mul '"b"' 2)" >/dev/null
  done
  if [[ $(batch "$(op bs sum '"b"')" "$(op cond gt '"bs"' 0)" "$(value '"cond"')" |
    json 'doc["results"][2]["tensors"][0]["value"]["data"][0]') == True ]]; then
    echo b  # c = b
  else
    batch "$(op c mul 100 '"b"')" >/dev/null
    echo c
  fi
}

batch '{"kind": "create", "name": "a", "factory": "randn", "args": [[]], "requires_grad": true}' \
  '{"kind": "create", "name": "a", "data": 100.0, "requires_grad": true}' >/dev/null
d=$(f a)
cell 'In [79]' 'a = torch.randn(size=(), requires_grad=True)
a = torch.tensor(100., requires_grad=True)
d = f(a)
d.backward()
a, d' \
  "{\"kind\": \"backward\", \"tensor\": \"$d\"}" "$(show '"a"')" "$(show "\"$d\"")"

cell 'In [80]' 'a.grad == d / a, a.grad' \
  "$(op q div "\"$d\"" '"a"')" "$(op out eq '{"grad_of": "a"}' '"q"')" \
  "$(show '"out"')" "$(show '{"grad_of": "a"}')"
