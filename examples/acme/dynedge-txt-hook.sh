#!/bin/sh
# ACME DNS-01 hook for dynedge's ApertoDNS TXT endpoint (set-accumulating, so a wildcard and its
# apex can be validated at once).
#
# lego (exec provider):   EXEC_PATH=examples/acme/dynedge-txt-hook.sh lego --dns exec ...
#                         lego calls: HOOK present|cleanup _acme-challenge.host.zone. VALUE
# acme.sh:                see dns_dynedge.sh next to this file (it calls this script).
# certbot (manual mode):  certbot certonly --manual --preferred-challenges dns \
#                           --manual-auth-hook 'HOOK certbot-auth' --manual-cleanup-hook 'HOOK certbot-cleanup' \
#                           -d home.dyn.example.test -d '*.home.dyn.example.test'
#                         (certbot passes CERTBOT_DOMAIN and CERTBOT_VALIDATION in the environment)
# by hand:                HOOK present _acme-challenge.home.dyn.example.test. "value"
#
# Environment: DYNEDGE_URL (default https://127.0.0.1:8443), DYNEDGE_TOKEN (an API token with the
# txt scope), DYNEDGE_CACERT (optional CA file for a self-signed gateway).
set -eu
action=${1:?present|cleanup|certbot-auth|certbot-cleanup}
case "$action" in
  certbot-auth|certbot-cleanup)
    # certbot names the domain without "*." for a wildcard; both share one TXT name.
    set -- "${action#certbot-}" "_acme-challenge.${CERTBOT_DOMAIN:?set by certbot}." \
      "${CERTBOT_VALIDATION:?set by certbot}"
    [ "$1" = auth ] && set -- present "$2" "$3"
    action=$1 ;;
esac
fqdn=${2:?the _acme-challenge name}
value=${3:?the TXT value}
url=${DYNEDGE_URL:-https://127.0.0.1:8443}
token=${DYNEDGE_TOKEN:?set DYNEDGE_TOKEN}
name=${fqdn%.}
case "$action" in
  present) method=POST ;;
  cleanup) method=DELETE ;;
  *) echo "unknown action $action (present|cleanup|certbot-auth|certbot-cleanup)" >&2; exit 2 ;;
esac
# JSON-escape the two strings (ACME values are base64url; names are plain labels).
body=$(printf '{"hostname":"%s","value":"%s"}' "$name" "$value")
set -- -sS -f -m 20 -X "$method" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' --data-binary "$body"
if [ -n "${DYNEDGE_CACERT:-}" ]; then set -- "$@" --cacert "$DYNEDGE_CACERT"; fi
curl "$@" "$url/.well-known/apertodns/v1/txt" >/dev/null
