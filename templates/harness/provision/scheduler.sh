#!/bin/sh
# The cross-resource scheduler: asks every resource manager (a name, or HOST:PORT) for
# its health and records the answers, the way the real scheduler discovers what it can
# place work on.
set -eu
mkdir -p /var/www/api
: > /var/www/api/resources
for rm in "$@"; do
  # (busybox 1.35 wget crashes with -T; timeout bounds it instead)
  answer=$(timeout 5 wget -q -O- "http://$rm/api/health")
  echo "$rm: $answer" >> /var/www/api/resources
done
echo "scheduler ok" > /var/www/api/health
cat /var/www/api/resources
