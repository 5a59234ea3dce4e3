#!/usr/bin/env bash
# Makes development TLS certificates with the openssl command:
#   DIR/ca.pem, ca.key          a CA (trusted by agents, gateway and CLI)
#   DIR/server.pem, server.key  coordinator and gateway; DNS:localhost,
#                               IP:127.0.0.1 and each name in
#                               TASKGRID_CERT_NAMES (comma-separated; an IP
#                               address becomes an IP name)
#   DIR/agent-ID.pem, .key      one client certificate per agent id (CN=ID,
#                               DNS:ID) for a coordinator with --tls_client_ca
# Usage: make-dev-certs.sh DIR [AGENT_ID...]   (default agent: agent-1)
# Existing files are kept, so running it again only adds what is missing
# (delete server.pem to re-issue it with other names).
# Not for production: the CA key sits next to the certificates.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [AGENT_ID...]" >&2; exit 2; }
dir=$1; shift
agents=("$@"); [ ${#agents[@]} -gt 0 ] || agents=(agent-1)
days=${TASKGRID_CERT_DAYS:-825}
mkdir -p "$dir"; cd "$dir"; umask 077

newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
if [ ! -f ca.pem ]; then
  openssl req -x509 "${newkey[@]}" -keyout ca.key -out ca.pem -days "$days" \
    -subj "/CN=taskgrid development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  echo "made $dir/ca.pem"
fi

# issue NAME CN SAN USAGE: NAME.pem and NAME.key signed by the CA.
issue() {
  [ -f "$1.pem" ] && return 0
  openssl req -new "${newkey[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 12)" \
    -days "$days" -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
  echo "made $dir/$1.pem ($3)"
}

san="DNS:localhost,IP:127.0.0.1"
IFS=',' read -ra extra <<< "${TASKGRID_CERT_NAMES:-}"
for n in "${extra[@]}"; do
  n=$(echo "$n" | tr -d '[:space:]'); [ -n "$n" ] || continue
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
done
issue server localhost "$san" serverAuth
for id in "${agents[@]}"; do issue "agent-$id" "$id" "DNS:$id" clientAuth; done
chmod 644 ./*.pem
