"""What docker-compose.yml exposes and with which secrets (issue 14; docs/security.md), checked on
configurations `docker compose config` rendered with a throwaway .env from scripts/secrets.sh:

    python3 scripts/check-compose-exposure.py ENV_FILE [--bind-override] RENDERED.yml ...

Each RENDERED file is checked for:
- ports: MongoDB, Redis, every RabbitMQ container and HAProxy's statistics are published on
  127.0.0.1 only, and no container uses the host's network; the balancer's contract ports
  3000-3004 too, unless the file follows --bind-override (rendered with BIND_ADDRESS=0.0.0.0),
  where they must be on 0.0.0.0 instead (the override works, and moves nothing else);
- secrets: none that anyone knows (the defaults published in this repository, RabbitMQ's guest,
  ALLOW_DEV_SECRETS), and every one wired from ENV_FILE: each service logs in to MongoDB as the
  root user the mongo container creates, to Redis with its requirepass, and to every RabbitMQ
  node as its own user with its own RABBIT_<SERVICE>_PASSWORD; auth signs with JWT_SECRET.
And the compose files themselves for a default that would stand in for a missing secret: each
secret of ENV_FILE is read as ${NAME:?...} only, so that compose refuses to start without it.
It first makes sure that it catches a broken configuration of each kind, then prints nothing
and exits 0 when all is well, or names every problem and exits 1.
"""

import copy
import pathlib
import re
import sys
from urllib.parse import urlsplit

import yaml

LOOPBACK = "127.0.0.1"
LOOPBACK_ADDRESSES = {LOOPBACK, "::1", "[::1]"}
CONTRACT_PORTS = {3000, 3001, 3002, 3003, 3004}
# Secrets published in this repository or its history, and RabbitMQ's default login.
PUBLIC_SECRETS = [
    "compose-development-secret-change-me-please",  # the JWT_SECRET default before issue 14
    "development-secret-change-me",  # auth's built-in JWT_SECRET (common/src/secrets.rs)
    "rabbit-shop-classroom-cookie",  # the Erlang cookie default before issue 14
    "guest:guest",
]


def published(port):
    """(host address, published port, container port) of a `ports` entry, short or long syntax;
    a port published with no address is on every interface (0.0.0.0)."""
    if isinstance(port, dict):
        target = int(str(port["target"]).split("/")[0])
        return port.get("host_ip") or "0.0.0.0", port.get("published"), target
    text = str(port).split("/")[0]
    match = re.fullmatch(r"(?:(\[[^\]]*\]|[^:]*):)??(?:(\d*(?:-\d+)?):)?(\d+(?:-\d+)?)", text)
    if not match:
        raise ValueError(f"cannot read the port {port!r}")
    address, host_port, target = match.groups()
    return address or "0.0.0.0", host_port, int(target.split("-")[0])


def is_rabbitmq(service):
    return str(service.get("image", "")).startswith("rabbitmq:")


def infrastructure(name, service):
    return name in ("mongo", "redis") or is_rabbitmq(service)


def port_problems(services, bind_override):
    problems = []
    for name, service in services.items():
        if service.get("network_mode") == "host":
            problems.append(f"{name} uses the host's network: its every port is open")
        for port in service.get("ports", []):
            address, host_port, target = published(port)
            where = f"{name} publishes {target} on {address}:{host_port or '(any port)'}"
            contract = name == "balancer" and target in CONTRACT_PORTS
            if contract and bind_override:
                if address != "0.0.0.0":
                    problems.append(f"{where}: BIND_ADDRESS=0.0.0.0 should have moved it there")
            elif address not in LOOPBACK_ADDRESSES:
                kind = "infrastructure" if infrastructure(name, service) else "a port"
                problems.append(f"{where}: {kind} must be published on {LOOPBACK} only")
    return problems


def env(service):
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def secret_problems(services, secrets):
    problems = []
    text = yaml.safe_dump(services)
    for public in PUBLIC_SECRETS:
        if public in text:
            problems.append(f"the configuration holds {public!r}, a secret anyone knows")
    for name, service in services.items():
        if "ALLOW_DEV_SECRETS" in env(service):
            problems.append(f"{name} sets ALLOW_DEV_SECRETS, which accepts secrets anyone knows")

    mongo, redis = env(services["mongo"]), services["redis"]
    if mongo.get("MONGO_INITDB_ROOT_PASSWORD") != secrets["MONGO_PASSWORD"]:
        problems.append("mongo's root password is not MONGO_PASSWORD of .env")
    command = [str(arg) for arg in redis.get("command") or []]

    def option(flag):
        return command[command.index(flag) + 1] if flag in command[:-1] else None

    if option("--requirepass") != secrets["REDIS_PASSWORD"]:
        problems.append("redis does not require REDIS_PASSWORD of .env (--requirepass)")
    if not option("--maxmemory"):
        problems.append("redis has no --maxmemory")
    if option("--maxmemory-policy") not in ("noeviction", "volatile-lru", "volatile-lfu"):
        problems.append("redis's --maxmemory-policy could evict images (keys without expiry)")

    for name, service in services.items():
        if not is_rabbitmq(service) or "entrypoint" in service:
            continue
        node = env(service)
        if node.get("RABBITMQ_DEFAULT_USER", "guest") == "guest":
            problems.append(f"{name}: a blank node would create guest (RABBITMQ_DEFAULT_USER)")
        if node.get("RABBITMQ_DEFAULT_PASS") != secrets["RABBITMQ_ADMIN_PASSWORD"]:
            problems.append(f"{name}: RABBITMQ_DEFAULT_PASS is not RABBITMQ_ADMIN_PASSWORD of .env")
        if node.get("RABBITMQ_ERLANG_COOKIE") != secrets["RABBITMQ_ERLANG_COOKIE"]:
            problems.append(f"{name}: RABBITMQ_ERLANG_COOKIE is not the one of .env")

    for name, service in services.items():
        if "build" not in service:
            continue
        variables = env(service)
        expected_password = secrets[f"RABBIT_{name.upper()}_PASSWORD"]
        for url in filter(None, map(str.strip, variables.get("RABBIT_URL", "").split(","))):
            parts = urlsplit(url)
            if (parts.username, parts.password) != (name, expected_password):
                problems.append(
                    f"{name} logs in to {parts.hostname} as {parts.username!r}, not as {name!r} "
                    f"with RABBIT_{name.upper()}_PASSWORD"
                )
        if "MONGO_URL" in variables:
            parts = urlsplit(variables["MONGO_URL"])
            login = (parts.username, parts.password)
            if login != (mongo.get("MONGO_INITDB_ROOT_USERNAME"), secrets["MONGO_PASSWORD"]):
                problems.append(f"{name}'s MONGO_URL does not log in as mongo's root user")
        if "REDIS_URL" in variables:
            if urlsplit(variables["REDIS_URL"]).password != secrets["REDIS_PASSWORD"]:
                problems.append(f"{name}'s REDIS_URL does not carry REDIS_PASSWORD")
    if env(services["auth"]).get("JWT_SECRET") != secrets["JWT_SECRET"]:
        problems.append("auth's JWT_SECRET is not the one of .env")
    return problems


COMPOSE_FILES = ["docker-compose.yml", "docker-compose.scale.yml"]


def default_problems(secrets):
    """Secrets read otherwise than as ${NAME:?message} (with a default, or optional)."""
    problems = []
    root = pathlib.Path(__file__).resolve().parent.parent
    for file in COMPOSE_FILES:
        text = (root / file).read_text()
        for name in secrets:
            for use in re.finditer(rf"\$\{{{name}([^A-Za-z0-9_][^}}]*)?\}}|\${name}\b", text):
                if not (use.group(1) or "").startswith(":?"):
                    problems.append(f"{file} reads {name} as {use.group(0)}, not as ${{{name}:?...}}")
    return problems


def problems_of(services, secrets, bind_override):
    return port_problems(services, bind_override) + secret_problems(services, secrets)


def catches_broken_configurations(services, secrets):
    """The checks above, tried on broken copies of a good configuration: each must be caught."""
    def broken(change):
        copied = copy.deepcopy(services)
        change(copied)
        return problems_of(copied, secrets, bind_override=False)

    def guest(s):
        s["cart"]["environment"]["RABBIT_URL"] = "amqp://guest:guest@rabbitmq:5672/%2f"

    cases = {
        "MongoDB on every interface": lambda s: s["mongo"].update(ports=["27017:27017"]),
        "Redis on a LAN address": lambda s: s["redis"].update(ports=["192.168.1.5:6379:6379"]),
        "RabbitMQ, long syntax": lambda s: s["rabbitmq"].update(
            ports=[{"published": 15672, "target": 15672}]
        ),
        "a container on the host's network": lambda s: s["redis"].update(network_mode="host"),
        "the old JWT_SECRET": lambda s: s["auth"]["environment"].update(
            JWT_SECRET="compose-development-secret-change-me-please"
        ),
        "guest in a RABBIT_URL": guest,
        "MongoDB without a password": lambda s: s["catalog"]["environment"].update(
            MONGO_URL="mongodb://mongo:27017"
        ),
        "an evicting Redis": lambda s: s["redis"].update(
            command=[*map(str, s["redis"]["command"][:-1]), "allkeys-lru"]
        ),
    }
    return [case for case, change in cases.items() if not broken(change)]


def main(arguments):
    secrets = {}
    for line in open(arguments[0]):
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.rstrip("\n").split("=", 1)
            secrets[key] = value
    # Each problem once, with the renderings that have it.
    problems, bind_override, first = {}, False, None
    for argument in arguments[1:]:
        if argument == "--bind-override":
            bind_override = True
            continue
        services = yaml.safe_load(open(argument))["services"]
        first = first or services
        for problem in problems_of(services, secrets, bind_override):
            problems.setdefault(problem, []).append(pathlib.Path(argument).stem)
        bind_override = False
    for problem in default_problems(secrets):
        problems[problem] = []
    uncaught = catches_broken_configurations(first, secrets) if first else ["no configuration"]
    for case in uncaught:
        problems[f"this check misses {case}"] = []
    for problem, renderings in problems.items():
        where = f" (rendered: {', '.join(renderings)})" if renderings else ""
        print(f"check-compose: {problem}{where}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
