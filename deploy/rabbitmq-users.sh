#!/usr/bin/env bash
# The broker's users (issue 14): the user of every service, with the permissions of
# deploy/rabbitmq-permissions.tsv on one vhost (written from rabbit::contract::permissions, and
# checked against it by the rabbit crate's tests). Idempotent: run it again after changing a
# password or the contract, it resets both. Users belong to the whole cluster, so one node is
# enough. Run by the one-shot `rabbitmq-users` service of docker-compose.yml (once rabbitmq is
# healthy, before any service starts) and by scripts/deps.sh for the local broker.
#
#   RABBITMQ_NODE, RABBITMQ_ERLANG_COOKIE  the node rabbitmqctl reaches, and its cookie (compose)
#   RABBITMQCTL    otherwise, how to call rabbitmqctl (default: rabbitmqctl)
#   RABBIT_VHOST   the vhost (default: /)
#   RABBIT_<SERVICE>_PASSWORD  each service's password (e.g. RABBIT_CART_PASSWORD); without it the
#                  development password <service>-dev-password, only with ALLOW_DEV_SECRETS=1
#   RABBITMQ_ADMIN_PASSWORD  when set, user admin (tag administrator) gets it and guest is deleted
#                  (a volume made by an earlier version has it): the compose deployment
#   RABBIT_IMPERSONATOR  a user tagged administrator and impersonator, who may publish as any
#                  service: guest on the local broker of the tests (which publish as a service)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${RABBITMQ_NODE:-}" ]; then
  ctl=(rabbitmqctl --node "$RABBITMQ_NODE" --erlang-cookie "$RABBITMQ_ERLANG_COOKIE")
else
  read -r -a ctl <<< "${RABBITMQCTL:-rabbitmqctl}"
fi
cd /  # rabbitmqctl run as another user must be able to enter the working directory
vhost=${RABBIT_VHOST:-/}
ctl() { "${ctl[@]}" --quiet "$@" </dev/null; }

users=$(ctl list_users --silent | awk '{ print $1 }')
exists() { grep -qxF "$1" <<<"$users"; }
# Creates user $1 with password $2, or sets its password if it exists.
user() {
  if exists "$1"; then
    ctl change_password "$1" "$2" >/dev/null
  else
    ctl add_user "$1" "$2" >/dev/null
  fi
}

ctl add_vhost "$vhost" >/dev/null 2>&1 || true
if [ -n "${RABBITMQ_ADMIN_PASSWORD:-}" ]; then
  user admin "$RABBITMQ_ADMIN_PASSWORD"
  ctl set_user_tags admin administrator >/dev/null
  ctl set_permissions --vhost "$vhost" admin '.*' '.*' '.*' >/dev/null
fi
while IFS=$'\t' read -r -u 3 service configure write read; do
  variable="RABBIT_${service^^}_PASSWORD"
  password=${!variable:-}
  if [ -z "$password" ]; then
    if [ "${ALLOW_DEV_SECRETS:-}" != 1 ]; then
      echo "rabbitmq-users: $variable is not set (run bash scripts/secrets.sh;" \
        "ALLOW_DEV_SECRETS=1 allows the development password)" >&2
      exit 1
    fi
    password="$service-dev-password"
  fi
  user "$service" "$password"
  ctl set_user_tags "$service" >/dev/null
  ctl set_permissions --vhost "$vhost" "$service" "$configure" "$write" "$read" >/dev/null
done 3< "$here/rabbitmq-permissions.tsv"
if [ -n "${RABBIT_IMPERSONATOR:-}" ]; then
  ctl set_user_tags "$RABBIT_IMPERSONATOR" administrator impersonator >/dev/null
fi
if [ -n "${RABBITMQ_ADMIN_PASSWORD:-}" ] && exists guest; then
  ctl delete_user guest >/dev/null
fi
echo "rabbitmq-users: auth, image, catalog, cart, orders on vhost $vhost" >&2
