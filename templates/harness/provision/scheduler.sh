#!/bin/sh
# The cross-resource scheduler: asks every resource manager for its health and records
# the answers, the way the real scheduler discovers what it can place work on.
set -eu
mkdir -p /var/www/api
: > /var/www/api/resources
for rm in "$@"; do
  answer=$(wget -q -T 5 -O- "http://$rm/api/health")
  echo "$rm: $answer" >> /var/www/api/resources
done
echo "scheduler ok" > /var/www/api/health
cat /var/www/api/resources
