#!/usr/bin/env bash
# Writes the secrets docker-compose.yml needs into .env (next to it, where `docker compose` reads
# it), each a random 256-bit value in hex:
#   JWT_SECRET                  signs auth's tokens
#   MONGO_PASSWORD              MongoDB's `root` user (the services log in as it)
#   REDIS_PASSWORD              Redis's `requirepass`
#   RABBITMQ_ADMIN_PASSWORD     RabbitMQ's `admin` user (the management UI on :15672)
#   RABBITMQ_ERLANG_COOKIE      what RabbitMQ nodes and their CLI tools authenticate each other with
#   RABBIT_<SERVICE>_PASSWORD   the broker user of each service (auth, image, catalog, cart, orders)
#
#   bash scripts/secrets.sh [--force] [FILE]
#
# Idempotent: a secret FILE (default .env) already holds is kept, only missing ones are added, so
# `bash scripts/secrets.sh && docker compose up --build` is safe to run every time. --force
# replaces them all; MongoDB and RabbitMQ keep the passwords their volumes were created with, so
# after --force wipe the volumes (`docker compose down -v`) or change those passwords by hand.
# The file is readable by its owner only; .gitignore and .dockerignore keep it out of git and of
# the images.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECRETS=(
  JWT_SECRET
  MONGO_PASSWORD
  REDIS_PASSWORD
  RABBITMQ_ADMIN_PASSWORD
  RABBITMQ_ERLANG_COOKIE
  RABBIT_AUTH_PASSWORD
  RABBIT_IMAGE_PASSWORD
  RABBIT_CATALOG_PASSWORD
  RABBIT_CART_PASSWORD
  RABBIT_ORDERS_PASSWORD
)

force=0
file=.env
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "unknown option $arg (usage: bash scripts/secrets.sh [--force] [FILE])" >&2; exit 2 ;;
    *) file=$arg ;;
  esac
done

# 32 random bytes as 64 hex digits: safe in URLs, YAML and shell without quoting.
random() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

umask 077
lines=()
[ -f "$file" ] && mapfile -t lines <"$file"
new=$([ ${#lines[@]} -eq 0 ] && echo 1 || echo 0)
kept=() added=()
for name in "${SECRETS[@]}"; do
  value=
  for line in "${lines[@]}"; do
    [[ $line == "$name="* ]] && value=${line#*=}
  done
  if [ -n "$value" ] && [ "$force" = 0 ]; then
    kept+=("$name")
    # The values go into URLs (MONGO_URL, REDIS_URL, RABBIT_URL) unencoded.
    if ! [[ $value =~ ^[A-Za-z0-9._~-]+$ ]]; then
      echo "warning: $name in $file has characters other than letters, digits and . _ ~ -;" \
        "the URLs built from it will not parse" >&2
    fi
    continue
  fi
  others=()
  for line in "${lines[@]}"; do
    [[ $line == "$name="* ]] || others+=("$line")
  done
  lines=("${others[@]}" "$name=$(random)")
  added+=("$name")
done
if [ ${#added[@]} -eq 0 ]; then
  echo "$file already holds every secret: kept them (--force replaces them)"
  exit 0
fi
if [ "$new" = 1 ]; then
  lines=("# The secrets of docker-compose.yml, written by scripts/secrets.sh. Keep this file private:"
    "# never commit, share or paste it." "${lines[@]}")
fi
tmp=$(mktemp "$file.XXXXXX")
printf '%s\n' "${lines[@]}" >"$tmp"
mv "$tmp" "$file"
echo "$file: generated ${added[*]}"
if [ ${#kept[@]} -gt 0 ]; then
  echo "$file: kept ${kept[*]}"
fi
