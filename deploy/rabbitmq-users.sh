#!/usr/bin/env bash
# The broker's users (issue 14), run by the one-shot `rabbitmq-users` service of
# docker-compose.yml once rabbitmq is healthy and before any service starts. rabbitmqctl reaches
# the node RABBITMQ_NODE with the cluster's RABBITMQ_ERLANG_COOKIE; users are shared by every node
# of a cluster. Idempotent, and run on every `docker compose up`, so the broker follows .env:
#   admin          RABBITMQ_ADMIN_PASSWORD, tag administrator: the management UI and rabbitmqctl's
#                  equal (a blank node was created with it, see RABBITMQ_DEFAULT_USER)
#   auth ... orders RABBIT_<SERVICE>_PASSWORD: each service's own login, as in its RABBIT_URL
#   guest          deleted if present (a volume made by an earlier version has it)
set -euo pipefail

ctl() {
  rabbitmqctl --quiet --node "$RABBITMQ_NODE" --erlang-cookie "$RABBITMQ_ERLANG_COOKIE" "$@"
}

users=$(ctl list_users --silent | awk '{ print $1 }')
exists() { grep -qxF "$1" <<<"$users"; }

# Creates user $1 with password $2, or sets its password if it exists.
user() {
  if exists "$1"; then
    ctl change_password "$1" "$2"
  else
    ctl add_user "$1" "$2"
  fi
}

user admin "$RABBITMQ_ADMIN_PASSWORD"
ctl set_user_tags admin administrator
ctl set_permissions --vhost / admin '.*' '.*' '.*'

for service in auth image catalog cart orders; do
  password_variable="RABBIT_${service^^}_PASSWORD"
  user "$service" "${!password_variable:?$password_variable is not set}"
  ctl set_user_tags "$service"
  # ISSUE 14, the lead's part: each service's own configure/write/read permissions on the vhost
  # replace these, which let it do what guest could.
  ctl set_permissions --vhost / "$service" '.*' '.*' '.*'
done

if exists guest; then
  ctl delete_user guest
fi
echo "RabbitMQ users: admin, auth, image, catalog, cart, orders; no guest"
