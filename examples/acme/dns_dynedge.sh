#!/usr/bin/env sh
# acme.sh DNS API plugin for dynedge: copy to ~/.acme.sh/dnsapi/ (with dynedge-txt-hook.sh on
# PATH or DYNEDGE_HOOK set), then:
#   DYNEDGE_URL=https://gw.example.com DYNEDGE_TOKEN=... acme.sh --issue --dns dns_dynedge -d host.zone -d '*.host.zone'
dns_dynedge_add() {
  "${DYNEDGE_HOOK:-dynedge-txt-hook.sh}" present "$1" "$2"
}
dns_dynedge_rm() {
  "${DYNEDGE_HOOK:-dynedge-txt-hook.sh}" cleanup "$1" "$2"
}
