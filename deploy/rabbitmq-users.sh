#!/usr/bin/env bash
# Creates the RabbitMQ user of every service with the permissions of
# deploy/rabbitmq-permissions.tsv (written from rabbit::contract::permissions, and checked against
# it by the rabbit crate's tests) on one vhost, and lets the management user publish as them
# (`impersonator`, for the management UI and the tests). Run it again after changing a password or
# the contract: it resets both. Users belong to the whole cluster, so one node is enough.
#
#   RABBITMQCTL   how to call rabbitmqctl (default: rabbitmqctl)
#   RABBIT_VHOST  the vhost (default: /)
#   RABBIT_<SERVICE>_PASSWORD  each service's password (e.g. RABBIT_CART_PASSWORD); without it
#                 the development password <service>-dev-password, and only with
#                 ALLOW_DEV_SECRETS=1 (a broker that listens on 127.0.0.1 only)
#   RABBIT_IMPERSONATOR  the user tagged impersonator besides administrator (default: guest)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
read -r -a ctl <<< "${RABBITMQCTL:-rabbitmqctl}"
cd /  # rabbitmqctl run as another user must be able to enter the working directory
vhost=${RABBIT_VHOST:-/}

"${ctl[@]}" -q add_vhost "$vhost" 2>/dev/null || true
while IFS=$'\t' read -r -u 3 user configure write read; do
  variable="RABBIT_${user^^}_PASSWORD"
  password=${!variable:-}
  if [ -z "$password" ]; then
    if [ "${ALLOW_DEV_SECRETS:-}" != 1 ]; then
      echo "rabbitmq-users: $variable is not set (ALLOW_DEV_SECRETS=1 allows the development password)" >&2
      exit 1
    fi
    password="$user-dev-password"
  fi
  if ! "${ctl[@]}" -q add_user "$user" "$password" >/dev/null 2>&1; then
    "${ctl[@]}" -q change_password "$user" "$password" >/dev/null
  fi
  "${ctl[@]}" -q set_user_tags "$user" >/dev/null
  "${ctl[@]}" -q set_permissions -p "$vhost" "$user" "$configure" "$write" "$read" >/dev/null
done 3< "$here/rabbitmq-permissions.tsv"
"${ctl[@]}" -q set_user_tags "${RABBIT_IMPERSONATOR:-guest}" administrator impersonator >/dev/null
echo "rabbitmq-users: users auth, image, catalog, cart, orders on vhost $vhost" >&2
