#!/usr/bin/env bash
# Fuzzes the running server against its own OpenAPI document with
# schemathesis: a real `countersign` on a free loopback port over a
# temporary SQLite file, an operator and a requestor key, a card with an
# enrolled (simulated) phone, then generated requests to every operation.
# The admin operations that revoke or rotate get records of their own to
# do it to (an operator, a requestor, a second phone), so the credentials
# the run uses keep working.
# Fails on any 5xx, any status, content type or body the document does not
# allow, or fewer than MIN_REQUESTS requests. Deterministic (fixed seed).
# FUZZ_MAX_EXAMPLES, FUZZ_SEED: the run's size and seed; FUZZ_KEEP=1 keeps
# the temporary folder (server log, schemathesis events) for a look.
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_REQUESTS=1000
# Per operation and phase (the coverage phase adds its own boundary cases):
# about 3,600 requests over the 44 operations, in well under a minute.
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-40}"
SEED="${FUZZ_SEED:-20261122}"

python="${COUNTERSIGN_TEST_PYTHON:-$(scripts/ensure-python-tools.sh)}"
schemathesis="$(dirname "$python")/schemathesis"

cargo build -q --locked -p countersign-server -p countersign-simulator
bin="$PWD/target/debug"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  [ -n "${FUZZ_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export COUNTERSIGN_DATABASE__URL="sqlite://$work/countersign.db"
export COUNTERSIGN_SECRETS__MASTER_KEY_FILE="$work/master.key"
export COUNTERSIGN_SERVER__LISTEN="127.0.0.1:$port"
export COUNTERSIGN_METRICS__ENABLED=false
export RUST_LOG=warn

# The value after "label:" in a command's output.
field() { sed -n "s/^$1:[[:space:]]*//p"; }

operator_key="$("$bin/countersign" operator create --name fuzz --role admin | field "api key")"
# The id of the requestor in the document's AReq example, so the example runs through.
requestor_key="$("$bin/countersign" requestor create --id shop-1 --name "Fuzz Shop" | field "api key")"
card="$(echo 378282246310005 | "$bin/countersign" card create --email taro@example.jp | sed -n 's/^card: \([^ ]*\).*/\1/p')"
code="$("$bin/countersign" enrolment-code create --card "$card" | field "enrolment code")"
spare_code="$("$bin/countersign" enrolment-code create --card "$card" | field "enrolment code")"
spare_operator="$("$bin/countersign" operator create --name spare --role support | sed -n 's/^operator: \([^ ]*\).*/\1/p')"
"$bin/countersign" requestor create --id shop-2 --name "Spare Shop" >/dev/null

"$bin/countersign" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  if "$python" -c "import urllib.request as u; u.urlopen('$base/readyz', timeout=1)" 2>/dev/null; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/server.log" >&2; exit 1; fi
  sleep 0.2
done

"$bin/countersign-device" --state "$work/device.json" enrol --server "$base" --code "$code" --push-token fuzz >/dev/null
"$bin/countersign-device" --state "$work/spare.json" enrol --server "$base" --code "$spare_code" --push-token spare \
  >/dev/null
device_id() { "$python" -c "import json, sys; print(json.load(open(sys.argv[1]))['deviceId'])" "$1"; }
device="$(device_id "$work/device.json")"
spare_device="$(device_id "$work/spare.json")"

# A purchase with a pending challenge, so the window and result operations
# reach more than "not found".
purchase="$("$python" - "$base" "$requestor_key" <<'PY'
import json, sys, uuid, urllib.request
base, key = sys.argv[1:]
areq = {
    "messageType": "AReq", "messageVersion": "2.2.0", "threeDSServerTransID": str(uuid.uuid4()),
    "deviceChannel": "02", "messageCategory": "01", "acctNumber": "378282246310005", "cardExpiryDate": "3012",
    "purchaseAmount": "12800", "purchaseCurrency": "978", "purchaseExponent": "2",
    "purchaseDate": "20261122101500", "merchantName": "Fuzz Outdoor", "mcc": "5941",
    "merchantCountryCode": "752", "acquirerMerchantID": "MID-1", "threeDSRequestorID": "shop-1",
    "threeDSRequestorName": "Fuzz Shop", "notificationURL": "http://127.0.0.1:9/notify",
    "browserAcceptHeader": "text/html", "browserJavaEnabled": False, "browserLanguage": "en",
    "browserColorDepth": "24", "browserScreenHeight": "900", "browserScreenWidth": "1440",
    "browserTZ": "0", "browserUserAgent": "fuzz",
}
request = urllib.request.Request(base + "/v1/authentications", json.dumps(areq).encode(),
                                 {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
ares = json.load(urllib.request.urlopen(request, timeout=10))
assert ares["transStatus"] == "C", ares
print(ares["acsTransID"])
PY
)"

# Credentials for each security scheme of the document, and real ids for
# half of the path parameters that name a card, a purchase, an operator, a
# requestor or a device. The device
# headers carry a real device id and a fresh timestamp but a signature
# nobody made: schemathesis cannot sign, so every signed device operation
# must refuse with 401 and a typed error, whatever the request.
cat >"$work/schemathesis.toml" <<TOML
[auth.openapi.requestorKey]
bearer = "$requestor_key"
[auth.openapi.operatorKey]
bearer = "$operator_key"
[auth.openapi.deviceId]
api_key = "$device"
[auth.openapi.deviceTimestamp]
api_key = "$(($(date +%s) * 1000))"
[auth.openapi.deviceNonce]
api_key = "AAAAAAAAAAAAAAAAAAAAAA"
[auth.openapi.deviceSignature]
api_key = "MEUCIQDy"

[dictionaries.cards]
values = ["$card"]
[dictionaries.purchases]
values = ["$purchase"]

[dictionaries.operators]
values = ["$spare_operator"]
[dictionaries.requestors]
values = ["shop-2"]
[dictionaries.devices]
values = ["$spare_device"]

[parameters]
"path.card_id" = { dictionary = "cards", probability = 0.5 }
"path.acs_trans_id" = { dictionary = "purchases", probability = 0.5 }
"path.operator_id" = { dictionary = "operators", probability = 0.5 }
"path.requestor_id" = { dictionary = "requestors", probability = 0.5 }
"path.device_id" = { dictionary = "devices", probability = 0.5 }

# schemathesis reuses ids it has seen in answers: it would find the run's
# own operator, requestor and phone in the admin lists and revoke them.
# The operations that revoke or rotate get the spare ids above only.
[[operations]]
include-operation-id = ["revokeOperator", "rotateRequestorApiKey", "revokePreviousRequestorApiKey", "revokeDevice"]
[operations.phases.examples.extra-data-sources]
responses = false
[operations.phases.coverage.extra-data-sources]
responses = false
[operations.phases.fuzzing.extra-data-sources]
responses = false
TOML

echo "== API fuzzing (schemathesis against $base/openapi.json, seed $SEED)"
# Every check but the two that need links between operations and
# positive_data_acceptance (the document cannot say "Luhn-valid" or "a card
# that exists"). Run from the temporary folder, which gets its caches.
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
checks="$checks,response_headers_conformance,negative_data_rejection,ignored_auth,unsupported_method"
checks="$checks,missing_required_header"
status=0
(cd "$work" && "$schemathesis" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
  --checks "$checks" --phases examples,coverage,fuzzing --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
  --generation-database none --workers 1 --request-timeout 30 \
  --report ndjson --report-ndjson-path "$work/events.ndjson") || status=$?

requests="$("$python" - "$work/events.ndjson" <<'PY'
import json, sys
count = 0
for line in open(sys.argv[1]):
    event = json.loads(line)
    for name, body in event.items():
        if name == "ScenarioFinished":
            for case in body.get("recorder", {}).get("interactions", {}).values():
                count += 1
print(count)
PY
)"
echo "API fuzzing: $requests requests"
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures (server log: last lines below)" >&2
  tail -n 20 "$work/server.log" >&2
  exit "$status"
fi
if [ "$requests" -lt "$MIN_REQUESTS" ]; then
  echo "only $requests requests, fewer than $MIN_REQUESTS: raise FUZZ_MAX_EXAMPLES" >&2
  exit 1
fi
