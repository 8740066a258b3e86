#!/bin/sh
# Sets up a HARNESS stand-in service: a small HTTP endpoint that answers with its role,
# and a /peers page listing what it can reach. Usage: service.sh ROLE [PEER...]
set -eu
role=$1; shift
mkdir -p /var/www/api
echo "$role ok" > /var/www/api/health
echo "role=$role host=$(hostname)" > /var/www/api/info
: > /var/www/api/peers
for peer in "$@"; do
  echo "$peer" >> /var/www/api/peers
done
echo "provisioned $role"
