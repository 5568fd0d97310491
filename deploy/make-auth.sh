#!/usr/bin/env bash
# Makes what a secured Sluice cluster needs, with openssl, into DIR:
#   ca.pem, private/ca.key          a certificate authority (keep ca.key offline;
#                                   kubectl create secret --from-file=DIR skips it)
#   coordinator.pem coordinator.key the coordinator's certificate, for the host
#                                   names and IP addresses given
#   worker.pem worker.key           the workers' client certificate
#   operator.pem operator.key       sluicectl's client certificate
#   tokens                          the coordinator's --token-file
#   worker.token operator.token reader.token   one bearer token each
# Usage: deploy/make-auth.sh DIR COORDINATOR_NAME...   (names or IP addresses,
#   e.g. sluice-coordinator sluice-coordinator.sluice.svc 127.0.0.1)
# Certificates are valid for 365 days; DIR must not hold a CA already.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
dir=$1
shift
if [[ -e "$dir/ca.pem" ]]; then
  echo "make-auth.sh: $dir/ca.pem exists; not overwriting it" >&2
  exit 1
fi
mkdir -p "$dir"
cd "$dir"
umask 077
mkdir -p private

san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
san=${san%,}

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }

key private/ca.key
openssl req -x509 -new -key private/ca.key -out ca.pem -days 365 -subj "/O=sluice/CN=sluice CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# issue NAME CN EXTENSIONS
issue() {
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/O=sluice/CN=$2"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey private/ca.key -days 365 -out "$1.pem" \
    -set_serial "0x$(openssl rand -hex 8)" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue coordinator "$1" "subjectAltName=$san
extendedKeyUsage=serverAuth"
issue worker sluice-worker "extendedKeyUsage=clientAuth"
issue operator sluice-operator "extendedKeyUsage=clientAuth"

worker=$(openssl rand -hex 32)
operator=$(openssl rand -hex 32)
reader=$(openssl rand -hex 32)
cat > tokens <<TOKENS
# sluice-coordinator --token-file: TOKEN ROLE [NAME]
$worker worker workers
$operator operate operator
$reader read reader
TOKENS
echo "$worker" > worker.token
echo "$operator" > operator.token
echo "$reader" > reader.token
chmod 0644 ca.pem coordinator.pem worker.pem operator.pem
echo "made in $dir: ca.pem, coordinator.{pem,key} for $san, worker.{pem,key}," \
  "operator.{pem,key}, tokens, worker.token, operator.token, reader.token"
