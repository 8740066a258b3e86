#!/bin/sh
# The PaaS manager: asks the scheduler where an application can run and records the
# placement, the way the real PaaS layer deploys through the cross-resource scheduler.
# Usage: paas.sh SCHEDULER
set -eu
scheduler=$1
mkdir -p /var/www/api
resources=$(timeout 5 wget -q -O- "http://$scheduler/api/resources")
target=$(echo "$resources" | grep ': rm-compute ok' | head -n 1 | cut -d: -f1)
[ -n "$target" ] || { echo "no compute resource offered by $scheduler" >&2; exit 1; }
echo "placed on: $target" > /var/www/api/placement
echo "paas ok" > /var/www/api/health
cat /var/www/api/placement
